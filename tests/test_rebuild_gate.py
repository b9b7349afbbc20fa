"""The rebuild's gate with the real models, on a copy of the ingested slice.

A rebuild made worse on purpose (the ``after_copy`` hook shuffles the vectors of the new collection
between its products: same payloads, so the catch-up leaves them be) must be refused: the alias stays,
the new collection goes, a write made during the rebuild is in the live collection, the report is kept and
``/metrics`` shows the live figures. ``force`` swaps it anyway. A normal rebuild swaps, and ``niteru
rebuild`` prints the report.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from api.app import create_app
from cli.main import app as cli
from embedding.text.artifact import resolve
from niteru.gate import report_path
from niteru.model_sync import recorded_text_models
from niteru.rebuild import rebuild
from niteru.route_table import load_route_table
from niteru.settings import Settings, get_settings
from niteru.store import ProductPoint, ProductStore, open_store
from niteru.write_inputs import ImageSource, ProductWrite, fields_of
from niteru.writes import ProductWriter, WriteResult
from tests.store_fixtures import Ingested

pytestmark = [pytest.mark.weights, pytest.mark.catalog, pytest.mark.slow]


def copy_of(ingested: Ingested, tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    shutil.copytree(ingested.settings.data_dir, data)
    return Settings(**{**ingested.settings.model_dump(), "data_dir": data})


def models_on_disk(settings: Settings, store: ProductStore) -> tuple[set[str], set[str]]:
    """The text and joint model versions on disk, and those some collection of the store (or CURRENT) needs."""
    text = settings.models_dir / "text"
    needed = {v for c, v in recorded_text_models(settings).items() if c in store.versions()} | {resolve(text).name}
    kinds = [settings.models_dir / k for k in ("text", "joint")]
    found = {p.name for d in kinds if d.is_dir() for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return found, needed


def worsen(store: ProductStore, written: list[str]) -> Callable[[ProductStore], None]:
    """The ``after_copy`` hook: shuffle the new collection's vectors between its products, and write a
    product through the live store meanwhile (its id goes to ``written``)."""

    def hook(copy: ProductStore) -> None:
        points = [p for batch in copy.scroll(with_vectors=True) for p in batch]
        order = np.random.default_rng(0).permutation(len(points))
        copy.upsert([ProductPoint(p.product, points[j].vectors) for p, j in zip(points, order, strict=True)])
        source = store.get(points[0].product.product_id, with_vectors=True)  # the live model's vectors
        assert source is not None
        late = source.product.model_copy(update={"product_id": "written-during-a-refused-rebuild"})
        store.upsert([ProductPoint(late, source.vectors)])
        written.append(late.product_id)

    return hook


def test_a_worse_rebuild_is_refused_and_the_live_collection_serves_on(ingested: Ingested, tmp_path: Path) -> None:
    settings = copy_of(ingested, tmp_path)
    written: list[str] = []
    with open_store(settings) as store:
        before, versions = store.current_version(), store.versions()
        report = rebuild(store, settings, after_copy=worsen(store, written))
        assert not report.swapped and report.gate["decision"] == "refuse"
        assert {"p10", "variant_r1"} <= set(report.gate["falls"])
        assert store.current_version() == before == report.current
        assert store.versions() == versions and report.dropped[0] not in store.versions()  # the copy is gone
        assert store.get(written[0]) is not None  # the write made meanwhile is served
        found, needed = models_on_disk(settings, store)
        assert found <= needed and report.text_model not in found - needed  # the refused copy's models went
    kept = json.loads(report_path(settings).read_text())
    assert kept["serving"] == "live" and kept["decision"] == "refuse"
    live = kept["live"]["measures"]["all"]
    assert live["p10"] > kept["new"]["measures"]["all"]["p10"] + settings.rebuild_gate_tolerance

    with TestClient(create_app(settings, embedders=ingested.embedders)) as client:
        text = client.get("/metrics").text
    shown = {
        (s.labels["measure"], s.labels["category"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "niteru_relevance"
    }
    assert shown[("p10", "all")] == pytest.approx(live["p10"])
    assert shown[("variant_r1", "all")] == pytest.approx(live["variant_r1"])


def test_force_swaps_a_worse_rebuild_and_says_so(ingested: Ingested, tmp_path: Path) -> None:
    settings = copy_of(ingested, tmp_path)
    with open_store(settings) as store:
        before = store.current_version()
        report = rebuild(store, settings, after_copy=worsen(store, []), force=True)
        assert report.swapped and report.gate["decision"] == "forced" and report.gate["falls"]
        assert store.current_version() == report.current != before
    assert json.loads(report_path(settings).read_text())["serving"] == "new"


def test_a_normal_rebuild_swaps_and_the_command_prints_the_report(
    ingested: Ingested, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rebuilds in a row: the second retrains the text model on the same texts (one thread, seeded: the
    same model), so nothing can fall and it must swap; run through ``niteru rebuild``."""
    settings = copy_of(ingested, tmp_path)
    with open_store(settings) as store:
        first = rebuild(store, settings, force=True)
    env = {
        "NITERU_DATA_DIR": str(settings.data_dir),
        "NITERU_CATALOG_DIR": str(settings.catalog_dir),
        "NITERU_TEXT_THREADS": "1",
        "NITERU_STORE_BATCH_SIZE": str(settings.store_batch_size),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["rebuild"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    with open_store(settings) as store:  # three text models were trained: the first (ingest's) is no longer needed
        found, needed = models_on_disk(settings, store)
        assert found <= needed and len(store.versions()) == 2
    kept = json.loads(report_path(settings).read_text())
    assert kept["decision"] == "swap" and kept["falls"] == {} and kept["serving"] == "new"
    assert kept["live"]["collection"] == first.current and kept["new"]["collection"] != first.current
    assert kept["live"]["measures"]["all"]["p10"] == kept["new"]["measures"]["all"]["p10"]
    printed = result.output[result.output.index("gate: ") :]  # after the progress bars (stderr, mixed in)
    assert printed.startswith(f"gate: swap on {kept['sample']} products")
    assert f"-> {kept['new']['collection']}" in printed
    for name in ("p10", "variant_r1", "colour", "brand"):
        assert f"\n  {name} " in printed


def as_png(path: Path) -> bytes:
    """The photo as a shop would upload it: other bytes (a stored product sent the same bytes is unchanged)."""
    from PIL import Image

    out = io.BytesIO()
    with Image.open(path) as img:
        img.save(out, format="PNG")
    return out.getvalue()


def test_a_store_filled_by_uploads_is_measured_from_the_kept_photos(ingested: Ingested, tmp_path: Path) -> None:
    """Every product re-sent as an upload (image ``upload:<sha>``, no catalog file behind it), then the
    catalog folder gone: the gate and the routing fit make their variants from the kept copies instead of
    passing unchecked and fitting by precision alone."""
    settings = copy_of(ingested, tmp_path)
    with open_store(settings) as store:
        # Other tests share the ingested slice and may have stored URL or uploaded products: those are left out.
        everything = [p for batch in store.scroll() for p in batch]
        points = [p for p in everything if (settings.catalog_dir / p.product.image).is_file()]
        for other in {p.product.product_id for p in everything} - {p.product.product_id for p in points}:
            store.delete(other)
        writer = ProductWriter(settings, store, ingested.embedders)
        uploads = [
            ProductWrite(
                p.product.product_id,
                fields_of(p.product),
                ImageSource.given(as_png(settings.catalog_dir / p.product.image)),
            )
            for p in points
        ]
        statuses = {o.status for o in writer.write_many(uploads) if isinstance(o, WriteResult)}
        assert statuses == {"updated"}
    # The slice is small: half of it validates the routing fit, which then fits with a few queries.
    small_fit = {"route_fit_validation_share": 0.5, "route_fit_min_queries": 5}
    uploads_only = Settings(**{**settings.model_dump(), "catalog_dir": tmp_path / "no-catalog", **small_fit})
    with open_store(uploads_only) as store:
        assert all(p.product.image.startswith("upload:") for batch in store.scroll() for p in batch)
        report = rebuild(store, uploads_only, force=True)
    assert report.gate["decision"] in ("swap", "forced") and report.gate["sample"] > 0  # not "unchecked"
    table = load_route_table(uploads_only, report.current)
    assert table is not None and table.info["variants"] > 0
