"""The ``niteru`` command: the composition root, outside the core. Each sub-command imports its heavy parts
only when it runs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.experiments import experiments_app
from cli.store import store_app

if TYPE_CHECKING:
    import numpy as np

    from niteru.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="niteru: similar products by image and text.")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def weights(
    force: Annotated[bool, typer.Option(help="Rebuild and convert again even when present.")] = False,
    int8: Annotated[
        bool, typer.Option(help="Also convert the int8 model (default: when NITERU_IMAGE_PRECISION=int8).")
    ] = False,
    calibration: Annotated[int, typer.Option(help="Catalog images to calibrate the int8 model on.")] = 256,
) -> None:
    """Prepare MobileNet ImageNet weights where Keras looks for them (no model hub needed), and convert
    every block to LiteRT beside them (the service runs those)."""
    from embedding.image.convert import convert, convert_missing, is_current
    from embedding.image.weights import prepare_weights
    from niteru.settings import get_settings

    settings = get_settings()
    typer.echo(prepare_weights(force=force))
    for path in convert_missing(settings.image_size, force=force):
        typer.echo(path)
    if int8 or settings.image_precision == "int8":
        block, size = settings.image_block, settings.image_size
        if force or not is_current(block, size, "int8"):
            typer.echo(convert(block, size, "int8", calibration_images(settings, calibration)))


def calibration_images(settings: Settings, n: int) -> np.ndarray:
    """A stratified sample of the catalog's images, prepared as the service prepares them."""
    import numpy as np

    from embedding.image import prepare_image
    from niteru.catalog import read_catalog, stratified_sample

    rows = stratified_sample(read_catalog(settings.catalog_dir), n)
    c = settings
    return np.stack(
        [prepare_image(r.image_path(settings.catalog_dir), size=c.image_size, resize=c.image_resize) for r in rows]
    )


@app.command("image-neighbours")
def image_neighbours(
    catalog: Annotated[Path | None, typer.Argument(help="Catalog folder (products.csv + images/).")] = None,
    limit: Annotated[int, typer.Option(help="How many catalog products to embed.")] = 300,
    queries: Annotated[int, typer.Option(help="How many of them to show neighbours for.")] = 5,
    k: Annotated[int, typer.Option(help="Neighbours per query.")] = 5,
) -> None:
    """Embed catalog images and print each query's nearest neighbours (a first look at the vectors)."""
    from niteru.demo import image_neighbours_demo

    image_neighbours_demo(catalog, limit=limit, queries=queries, k=k)


@app.command("train-text")
def train_text(
    catalog: Annotated[Path | None, typer.Argument(help="Catalog folder (default: the catalog_dir setting).")] = None,
) -> None:
    """Train the text model (fastText + SCDV) on a catalog's titles and descriptions; it becomes current."""
    from embedding.text import train_text_model
    from niteru.catalog import read_catalog
    from niteru.model_config import text_config
    from niteru.settings import get_settings

    settings = get_settings()
    texts = [row.text for row in read_catalog(catalog or settings.catalog_dir)]
    typer.echo(train_text_model(texts, text_config(settings)))


@app.command("train-category")
def train_category() -> None:
    """Train the category classifier on the store's products (their shop-given categories); it becomes current."""
    from niteru.categorize import CategoryTrainingError, train_from_store
    from niteru.settings import get_settings
    from niteru.store import StoreError, open_store

    settings = get_settings()
    try:
        with open_store(settings) as store:
            typer.echo(train_from_store(store, settings))
    except (StoreError, CategoryTrainingError) as exc:
        typer.echo(f"train-category failed: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def rebuild(
    force: bool = typer.Option(False, "--force", help="Swap even when the gate finds the new collection worse."),
) -> None:
    """Retrain the text model, the classifier and the joint model on the live catalog, rebuild the collection,
    and swap it in unless it measures worse than the live one (the gate: docs/retrieval.md). Exit code 3:
    refused."""
    from niteru.gate import format_report
    from niteru.rebuild import RebuildError
    from niteru.rebuild import rebuild as run_rebuild
    from niteru.settings import get_settings
    from niteru.store import StoreError, open_store

    settings = get_settings()
    try:
        with open_store(settings) as store:
            report = run_rebuild(store, settings, force=force)
    except (StoreError, RebuildError) as exc:
        typer.echo(f"rebuild failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(format_report(report.gate))
    if not report.swapped:
        typer.echo(
            f"refused: {report.current} serves on; the new collection ({report.dropped[0]}) was dropped "
            "(`niteru rebuild --force` swaps anyway)"
        )
        raise typer.Exit(3)
    typer.echo(
        f"{report.previous} -> {report.current}: {report.products} products, {report.caught_up} caught up, "
        f"text model {report.text_model}, joint model {report.joint_model or 'none'}; "
        f"routing {report.routing or 'not fitted'}; dropped {report.dropped or 'none'}"
    )


@app.command()
def rollback() -> None:
    """Point the alias back at the previous collection (kept by the last rebuild) and its text model."""
    from niteru.rebuild import RebuildError
    from niteru.rebuild import rollback as run_rollback
    from niteru.settings import get_settings
    from niteru.store import StoreError, open_store

    settings = get_settings()
    try:
        with open_store(settings) as store:
            typer.echo(f"now serving {run_rollback(store, settings)}")
    except (StoreError, RebuildError) as exc:
        typer.echo(f"rollback failed: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def ingest(
    catalog: Annotated[Path | None, typer.Argument(help="Catalog folder (default: the catalog_dir setting).")] = None,
    limit: Annotated[
        int | None, typer.Option(help="Ingest a stratified sample of this many rows (default: all).")
    ] = None,
    demo: Annotated[bool, typer.Option(help="Ingest the demo_products setting's sample size.")] = False,
    errors: Annotated[Path | None, typer.Option(help="JSON-lines error file (default under data_dir).")] = None,
) -> None:
    """Embed a catalog's images and texts into the store (resumable; bad rows go to the error file)."""
    from niteru.catalog import CatalogFormatError
    from niteru.ingest import ingest_catalog
    from niteru.settings import get_settings
    from niteru.store import StoreError

    settings = get_settings()
    try:
        report = ingest_catalog(
            catalog or settings.catalog_dir,
            settings,
            limit=settings.demo_products if demo and limit is None else limit,
            errors_path=errors,
        )
    except (StoreError, CatalogFormatError) as exc:  # a locked store or a wrong folder: say so, no traceback
        typer.echo(f"ingest failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(report.summary())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default: the api_host setting).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: the api_port setting).")] = None,
) -> None:
    """Serve the REST API (one process: the embedded store allows one at a time)."""
    import uvicorn

    from api.app import create_app
    from niteru.logs import setup_logging
    from niteru.settings import get_settings

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    # log_config=None: uvicorn leaves logging alone, so its access lines go through ours (JSON, request id).
    app = create_app(settings)
    uvicorn.run(app, host=host or settings.api_host, port=port or settings.api_port, log_config=None)


jobs_app = typer.Typer(no_args_is_help=True, help="Celery jobs: what failed for good.")


@jobs_app.command("failures")
def jobs_failures(
    limit: Annotated[int, typer.Option(help="Show the last N (0: all).")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Tasks that failed permanently (corrupt image, 404, invalid fields): recorded, never retried."""
    import json
    from dataclasses import asdict

    from jobs.failures import failures_path, list_failures
    from niteru.settings import get_settings

    settings = get_settings()
    rows = list_failures(settings, limit or None)
    for f in rows:
        if as_json:
            typer.echo(json.dumps(asdict(f), ensure_ascii=False))
        else:
            typer.echo(f"{f.at}  {f.task}  {f.product_id}  {f.reason}: {f.message}")
    if not as_json:
        typer.echo(f"{len(rows)} failure(s) shown from {failures_path(settings)}", err=True)


app.add_typer(jobs_app, name="jobs")
# Offline ANN experiments; the sub-app imports only Typer until a command runs.
app.add_typer(experiments_app, name="experiments")
# The vector store: migration between engines, the Edge index by hand.
app.add_typer(store_app, name="store")


if __name__ == "__main__":
    app()
