"""Fixtures of the store, ingest and API tests: a small real catalog slice, ingested once per session.

The slice is a stratified sample of catalog-dev (every k-th row, so it spans fashion, cosmetics, food,
drinks, home and electronics) written as a catalog folder in a tmp dir: its products.csv plus symlinks to
the real images, and a few deliberately bad rows. Nothing is copied into the repository.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from niteru.catalog import COLUMNS, CatalogRow, read_catalog, stratified_sample
from niteru.embedders import Embedders
from niteru.ingest import IngestReport
from niteru.settings import Settings
from niteru.store import ProductPoint, ProductStore, open_store

SLICE_SIZE = 48
# Bad rows added to the slice, with the reason ingest must report for each.
BAD_REASONS = {
    "bad-missing-image": "not_found",
    "bad-corrupt-image": "corrupt",
    "bad-text-as-image": "not_an_image",
    "bad-empty-title": "empty_title",
    "bad-price": "invalid_price",
    "bad-empty-image-file": "empty",
    "bad-no-words": "text_has_no_words",
}


def write_catalog(folder: Path, rows: list[CatalogRow], source: Path) -> Path:
    """A catalog folder whose images are symlinks into ``source`` (missing ones stay missing)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    with (folder / "products.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([getattr(row, c) for c in COLUMNS])
            target = source / row.image
            link = folder / row.image
            if target.is_file() and not link.exists():
                link.symlink_to(target)
    return folder


def bad_rows(good: list[CatalogRow], folder: Path) -> list[CatalogRow]:
    """Rows that must each fail with the reason in ``BAD_REASONS`` (their image files are made here)."""
    template = good[0]
    real = (folder / template.image).resolve().read_bytes()
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    (images / "bad-corrupt-image.jpg").write_bytes(real[: len(real) // 3])
    (images / "bad-text-as-image.jpg").write_text("this is not a picture\n")
    (images / "bad-empty-image-file.jpg").write_bytes(b"")

    def bad(pid: str, **changes: str) -> CatalogRow:
        fields: dict[str, str] = {"product_id": pid, "image": f"images/{pid}.jpg", **changes}
        return replace(template, **fields)  # type: ignore[arg-type]

    return [
        bad("bad-missing-image"),
        bad("bad-corrupt-image"),
        bad("bad-text-as-image"),
        bad("bad-empty-title", title="   ", image=template.image),
        bad("bad-price", price="cheap", image=template.image),
        bad("bad-empty-image-file"),
        bad("bad-no-words", title="!!! ???", description="", image=template.image),
        replace(good[1], line=0),  # the same product id twice: the second is refused
    ]


@dataclass
class Ingested:
    settings: Settings
    catalog: Path
    good: list[CatalogRow]
    report: IngestReport
    embedders: Embedders


@pytest.fixture(scope="session")
def slice_rows(catalog_dir: Path) -> list[CatalogRow]:
    return stratified_sample(read_catalog(catalog_dir), SLICE_SIZE)


@pytest.fixture(scope="session")
def ingested(tmp_path_factory: pytest.TempPathFactory, catalog_dir: Path, slice_rows: list[CatalogRow]) -> Ingested:
    """The slice plus bad rows, ingested into a fresh data dir with no text model: ingest trains one."""
    from niteru.embedders import load_embedders
    from niteru.ingest import ingest_catalog

    root = tmp_path_factory.mktemp("catalog")
    write_catalog(root, slice_rows, catalog_dir)
    rows = slice_rows + bad_rows(slice_rows, root)
    write_catalog(root, rows, catalog_dir)
    data = tmp_path_factory.mktemp("data")
    # The tests' image server runs on 127.0.0.1, an internal address the service refuses unless allowed.
    settings = Settings(
        data_dir=data, catalog_dir=root, store_batch_size=16, text_threads=1, image_fetch_allow_hosts=["127.0.0.1"]
    )
    report = ingest_catalog(root, settings)
    return Ingested(settings, root, slice_rows, report, load_embedders(settings))


@pytest.fixture(scope="session")
def embedders(ingested: Ingested) -> Embedders:
    return ingested.embedders


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        return


@pytest.fixture(scope="session")
def image_server(ingested: Ingested) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving the slice's catalog folder (tests never reach the internet)."""
    handler = functools.partial(_QuietHandler, directory=str(ingested.catalog))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def in_both_engines(
    points: list[ProductPoint], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ProductStore, ProductStore, list[ProductPoint]]]:
    """``points`` written to an Edge store and a qdrant-client store (the congruence tests compare them)."""
    from tests.test_store import DIMS, ENGINES

    stores = []
    try:
        for engine in ENGINES:
            store = open_store(Settings(data_dir=tmp_path_factory.mktemp(engine), store_engine=engine))
            stores.append(store)
            store.ensure_collection(DIMS)
            store.upsert(points)
        yield stores[0], stores[1], points
    finally:
        for store in stores:
            store.close()


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProductStore, ProductStore, list[ProductPoint]]]:
    """The same 60 products in an Edge store and a qdrant-client store."""
    import numpy as np

    from tests.test_store import make_point

    rng = np.random.default_rng(11)
    with in_both_engines([make_point(i, 100, rng) for i in range(60)], tmp_path_factory) as stores:
        yield stores
