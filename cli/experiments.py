"""``niteru experiments ...``: the offline vector-set and product-quantisation commands.

Only Typer is imported here; numpy, faiss, TensorFlow and matplotlib load inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

experiments_app = typer.Typer(no_args_is_help=True, help="Offline experiments (ANN indexes on real vectors).")


@experiments_app.command("vectors")
def vectors(
    out: Annotated[Path, typer.Option(help="Folder for <set>.npy, <set>.ids.json and resumable shards.")] = Path(
        "data/vectors"
    ),
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="catalog (each image once) or augmented (8 variants each).")
    ] = None,
    catalog: Annotated[Path | None, typer.Option(help="Catalog folder; default: the catalog_dir setting.")] = None,
) -> None:
    """Embed the catalog's images (and deterministic augmentations of them) with the MobileNet embedder."""
    from experiments.vectors import build_from_catalog
    from niteru.settings import get_settings

    settings = get_settings()
    for name in sets or ["catalog"]:
        typer.echo(build_from_catalog(catalog or settings.catalog_dir, out, name, settings))


@experiments_app.command("pq")
def pq(
    vectors: Annotated[
        str,
        typer.Option(help="An .npy file, or store:image / store:text (the store of NITERU_DATA_DIR)."),
    ],
    config: Annotated[Path, typer.Option(help="YAML grid of indexes and parameters.")] = Path("experiments/pq.yaml"),
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value: dotted.key=YAML value, e.g. ivfpq.nprobe=[1,8,32]."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Results folder; default data/experiments/pq-<timestamp>/.")] = None,
) -> None:
    """Recall, speed and memory of faiss indexes (flat, IVF, PQ, OPQ, HNSW, SQ8) and NGT on real vectors."""
    from experiments.config import ConfigError
    from experiments.pq import run_experiment

    try:
        result_dir = run_experiment(vectors, config, overrides or [], out)
    except ConfigError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(result_dir)


@experiments_app.command("report")
def report(
    results: Annotated[Path, typer.Argument(help="A results folder holding rows.json from `experiments pq`.")],
) -> None:
    """Render summary.md, rows.csv and the plots again from a finished run's rows.json (no re-measuring)."""
    import json

    from experiments.report import write_report

    saved = json.loads((results / "rows.json").read_text())
    write_report(saved["rows"], saved["meta"], results)
