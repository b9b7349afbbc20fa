"""``niteru store ...``: move a collection between engines, build the Edge index by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

store_app = typer.Typer(no_args_is_help=True, help="The vector store: engines, migration, index.")


@store_app.command("migrate")
def migrate_command(
    to: Annotated[str, typer.Option(help="Target engine: edge or qdrant.")],
    to_url: Annotated[str | None, typer.Option(help="Target Qdrant server URL (with --to qdrant).")] = None,
    to_path: Annotated[Path | None, typer.Option(help="Target embedded store folder.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 256,
    no_switch: Annotated[bool, typer.Option("--no-switch", help="Copy, but leave the target's alias.")] = False,
) -> None:
    """Copy the configured store's live collection, vectors and all, into another engine (no re-embedding)."""
    from niteru.settings import get_settings
    from niteru.store import StoreError, open_store
    from niteru.store.migrate import migrate

    if to not in ("edge", "qdrant"):
        raise typer.BadParameter("--to must be edge or qdrant")
    engine: Literal["edge", "qdrant"] = "edge" if to == "edge" else "qdrant"
    settings = get_settings()
    target_settings = settings.model_copy(
        update={"store_engine": engine, "qdrant_url": to_url if engine == "qdrant" else None, "store_dir": to_path}
    )
    if target_settings.qdrant_url is None and target_settings.store_path == settings.store_path:
        raise typer.BadParameter("the target is the source folder: give --to-path (or --to-url)")
    try:
        with open_store(settings) as source, open_store(target_settings) as target:
            report = migrate(source, target, batch_size, switch=not no_switch)
    except StoreError as exc:
        typer.echo(f"migrate failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    where = target_settings.qdrant_url or target_settings.store_path
    state = "now current" if report.switched else "not switched"
    typer.echo(
        f"{report.products} products {report.source} -> {report.target} at {where} ({state}) in {report.seconds:.1f} s"
    )


@store_app.command("build-index")
def build_index_command() -> None:
    """Build the Edge HNSW index of the live collection now (ingest does it after a bulk load)."""
    from niteru.settings import get_settings
    from niteru.store import StoreError, open_store

    try:
        with open_store(get_settings()) as store:
            store.build_index(wait=True)
            typer.echo(store.info())
    except StoreError as exc:
        typer.echo(f"build-index failed: {exc}", err=True)
        raise typer.Exit(1) from exc
