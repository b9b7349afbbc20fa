"""``niteru experiments ...``: the offline vector-set and product-quantisation commands.

Only Typer is imported here; numpy, faiss, TensorFlow and matplotlib load inside the commands. faiss, NGT,
PyYAML and matplotlib come with the ``experiments`` extra, which the service (and its image) leaves out: a
command that needs them says how to install them instead of failing with a traceback.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

experiments_app = typer.Typer(no_args_is_help=True, help="Offline experiments (ANN indexes on real vectors).")

# Top-level modules of the experiments extra (pyproject.toml), by the name they are imported as.
EXTRA_MODULES = ("faiss", "ngtpy", "yaml", "matplotlib")
INSTALL_HINT = "pip install 'niteru[experiments]' (in a checkout: pip install -e '.[experiments]')"


def _importable(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None  # None: imports of it are refused
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _missing_extra(missing: list[str]) -> typer.Exit:
    typer.echo(f"this command needs the experiments extra ({', '.join(missing)} missing): {INSTALL_HINT}", err=True)
    return typer.Exit(2)


@contextmanager
def experiments_extra(*needed: str) -> Iterator[None]:
    """Check the extra's modules a command needs before it starts (without importing them: faiss must not
    load before the command has set up OpenMP), and turn a missing one met later into the same message."""
    missing = [name for name in needed if not _importable(name)]
    if missing:
        raise _missing_extra(missing)
    try:
        yield
    except ImportError as exc:
        name = (exc.name or "").partition(".")[0]
        if name not in EXTRA_MODULES:
            raise
        raise _missing_extra([name]) from exc


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
    from niteru.settings import get_settings

    settings = get_settings()
    with experiments_extra():
        from experiments.vectors import build_from_catalog

        for name in sets or ["catalog"]:
            typer.echo(build_from_catalog(catalog or settings.catalog_dir, out, name, settings))


@experiments_app.command("pq")
def pq(
    vectors: Annotated[
        str,
        typer.Option(help="An .npy file, or store:image / store:text (the store of NITERU_DATA_DIR)."),
    ],
    config: Annotated[
        Path | None, typer.Option(help="YAML grid of indexes and parameters (default: the experiments' pq.yaml).")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value: dotted.key=YAML value, e.g. ivfpq.nprobe=[1,8,32]."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Results folder; default data/experiments/pq-<timestamp>/.")] = None,
) -> None:
    """Recall, speed and memory of faiss indexes (flat, IVF, PQ, OPQ, HNSW, SQ8) and NGT on real vectors."""
    with experiments_extra(*EXTRA_MODULES):
        from experiments.config import ConfigError, default_config
        from experiments.pq import run_experiment

        try:
            result_dir = run_experiment(vectors, config or default_config(), overrides or [], out)
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

    with experiments_extra("matplotlib"):
        from experiments.report import write_report

        saved = json.loads((results / "rows.json").read_text())
        write_report(saved["rows"], saved["meta"], results)
