"""``niteru ingest`` over a small real catalog slice with bad rows: summary, error file, resume."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from niteru.catalog import read_catalog
from niteru.ingest import ingest_catalog
from niteru.store import open_store
from tests.store_fixtures import BAD_REASONS, Ingested, write_catalog

pytestmark = [pytest.mark.weights, pytest.mark.catalog, pytest.mark.slow]


def test_first_run_stores_the_good_rows_and_reports_each_bad_one(ingested: Ingested) -> None:
    report = ingested.report
    good = len(ingested.good)
    assert report.rows == good + len(BAD_REASONS) + 1
    assert (report.written, report.unchanged, report.stale) == (good, 0, 0)
    lines = [json.loads(line) for line in Path(report.errors_path).read_text().splitlines()]
    by_id = {e["product_id"]: e["reason"] for e in lines if e["reason"] != "duplicate_product_id"}
    assert by_id == BAD_REASONS
    dup = [e for e in lines if e["reason"] == "duplicate_product_id"]
    assert [e["product_id"] for e in dup] == [ingested.good[1].product_id]
    assert report.failed == len(lines) and sum(report.reasons.values()) == len(lines)
    assert all(e["message"] and e["line"] > 0 for e in lines)
    # ingest trained the text model because none existed; a routing table it fits only on enough validation
    # queries (about 10 of 48 products here, fewer than route_fit_min_queries): the default table routes
    assert list((ingested.settings.models_dir / "text").iterdir())
    assert not list((ingested.settings.models_dir / "routing").glob("*.json"))


def test_a_second_run_embeds_nothing_unchanged_and_picks_up_edits(ingested: Ingested, tmp_path: Path) -> None:
    settings = ingested.settings.model_copy(update={"data_dir": tmp_path, "store_dir": tmp_path / "qdrant"})
    again = ingest_catalog(ingested.catalog, settings, embedders=ingested.embedders)
    assert again.written == len(ingested.good)
    again = ingest_catalog(ingested.catalog, settings, embedders=ingested.embedders)
    assert (again.written, again.unchanged) == (0, len(ingested.good))

    # one title edited: only that product is embedded again
    rows = read_catalog(ingested.catalog)
    edited = replace(rows[2], title=rows[2].title + " (new season)")
    folder = tmp_path / "edited"
    write_catalog(folder, [*rows[:2], edited, *rows[3:]], ingested.catalog)
    third = ingest_catalog(folder, settings, embedders=ingested.embedders)
    assert (third.written, third.unchanged) == (1, len(ingested.good) - 1)
    with open_store(settings) as store:
        stored = store.get(edited.product_id)
        assert stored is not None and stored.product.title == edited.title
        assert store.count() == len(ingested.good)


def test_ingest_fits_a_routing_table_when_the_collection_has_none(ingested: Ingested, tmp_path: Path) -> None:
    settings = ingested.settings.model_copy(
        update={"data_dir": tmp_path, "store_dir": tmp_path / "qdrant", "route_fit_min_queries": 2}
    )
    ingest_catalog(ingested.catalog, settings, embedders=ingested.embedders)
    with open_store(settings) as store:
        collection = store.current_version()
    table = json.loads((settings.models_dir / "routing" / f"{collection}.json").read_text())
    assert table["collection"] == collection and table["info"]["validation_queries"] >= 2
    fitted = (settings.models_dir / "routing" / f"{collection}.json").stat().st_mtime_ns
    ingest_catalog(ingested.catalog, settings, embedders=ingested.embedders)  # one exists: not fitted again
    assert (settings.models_dir / "routing" / f"{collection}.json").stat().st_mtime_ns == fitted


def test_limit_takes_a_stratified_sample(ingested: Ingested, tmp_path: Path) -> None:
    settings = ingested.settings.model_copy(update={"data_dir": tmp_path, "store_dir": tmp_path / "qdrant"})
    report = ingest_catalog(ingested.catalog, settings, limit=10, embedders=ingested.embedders)
    with (ingested.catalog / "products.csv").open(newline="") as f:
        ids = [r["product_id"] for r in csv.DictReader(f)]
    step = len(ids) / 10
    expected = [ids[int(i * step)] for i in range(10)]
    failed = {json.loads(line)["product_id"] for line in Path(report.errors_path).read_text().splitlines()}
    with open_store(settings) as store:
        assert sorted(store.content_hashes(expected)) == sorted(set(expected) - failed)
    assert report.rows == 10
