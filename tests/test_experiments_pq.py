"""The PQ experiment on a couple of thousand real MobileNet vectors of catalog-dev images.

The vectors are computed once per session by the experiment's own vector builder (which is then
tested too) into a pytest temp folder; nothing is read from data/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from experiments.config import ConfigError, default_config, expand, load_config
from experiments.pq import ground_truth, load_vectors, run_experiment, split_queries
from niteru.settings import Settings
from tests.store_fixtures import Ingested

CONFIG = default_config()  # experiments/pq.yaml, what the command runs without --config
N_IMAGES = 1600
# Everything off except what a test turns on, so each run stays a few seconds.
ALL_OFF = [f"{f}.enabled=false" for f in ("flat", "ivfflat", "pq", "ivfpq", "opq_ivfpq", "hnsw", "sq8", "ngt")]
FAST = ["run.repeats=1", "data.query_share=0.1", *ALL_OFF]


@pytest.fixture(scope="session")
def real_vectors(catalog_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from experiments.vectors import build_vector_set
    from niteru.catalog import read_catalog, stratified_sample

    rows = stratified_sample(read_catalog(catalog_dir), N_IMAGES)
    out = tmp_path_factory.mktemp("vectors")
    npy, ids = build_vector_set([r.image_path(catalog_dir) for r in rows], [r.product_id for r in rows], out, "catalog")
    assert json.loads(ids.read_text())["ids"][0] == f"{rows[0].product_id}#orig"
    return npy


def rows_of(result_dir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((result_dir / "rows.json").read_text())["rows"]
    return rows


pytestmark = [pytest.mark.slow, pytest.mark.weights, pytest.mark.catalog]


def test_vectors_are_real_unit_vectors(real_vectors: Path) -> None:
    v = np.load(real_vectors)
    assert v.shape[1] == 1024 and len(v) >= N_IMAGES - 5  # a few unreadable images at most
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    # Real images are far from random: neighbours are much closer than the average pair.
    sims = v[:500] @ v[:500].T
    np.fill_diagonal(sims, -1)
    assert sims.max(axis=1).mean() > sims[sims > -1].mean() + 0.2


def test_ground_truth_matches_numpy_brute_force(real_vectors: Path) -> None:
    base, queries = split_queries(load_vectors(str(real_vectors)), 0.05, 1000, seed=1)
    truth = ground_truth(base, queries, 10)
    expected = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    assert (truth[:, 0] == expected[:, 0]).mean() > 0.99  # float ties may swap a rare pair
    assert len(base) + len(queries) == len(np.load(real_vectors))


def test_exact_search_has_recall_one_and_report_is_complete(real_vectors: Path, tmp_path: Path) -> None:
    overrides = [*FAST, "flat.enabled=true", "pq.enabled=true", "pq.m=[16]", "pq.rerank=[0]"]
    out = run_experiment(str(real_vectors), CONFIG, overrides, tmp_path / "r")
    rows = {r["family"]: r for r in rows_of(out)}
    assert rows["flat"]["recall@1"] == 1.0 and rows["flat"]["recall@10"] == 1.0
    assert float(rows["flat"]["bytes_per_vector"]) >= 4 * 1024
    # 16 sub-quantisers of 8 bits: 16 bytes of code per vector, plus 16 x 256 x 64 float32 of codebooks.
    assert rows["pq"]["marginal_bytes_per_vector"] == 16
    assert rows["pq"]["fixed_bytes"] >= 16 * 256 * 64 * 4
    for name in ("rows.csv", "rows.json", "summary.md", "recall_vs_qps.png", "recall_vs_bytes.png"):
        assert (out / name).stat().st_size > 0
    assert "Pareto front" in (out / "summary.md").read_text()


def test_rerank_beats_the_same_pq_index_without_it(real_vectors: Path, tmp_path: Path) -> None:
    overrides = [*FAST, "ivfpq.enabled=true", "ivfpq.nlist=32", "ivfpq.m=[8]", "ivfpq.nprobe=[8]"]
    rows = rows_of(run_experiment(str(real_vectors), CONFIG, [*overrides, "ivfpq.rerank=[0,50]"], tmp_path / "r"))
    by_rerank = {r["search.rerank"]: r for r in rows}
    assert set(by_rerank) == {0, 50}
    assert by_rerank[50]["recall@10"] > by_rerank[0]["recall@10"] + 0.05
    assert by_rerank[50]["recall@1"] >= by_rerank[0]["recall@1"]


def test_command_line_override_changes_the_grid(real_vectors: Path, tmp_path: Path) -> None:
    from cli.main import app

    default = {
        s["nprobe"] for c in expand(load_config(CONFIG, []), 1024, 10_000) if c.family == "ivfflat" for s in c.searches
    }
    overrides = [*FAST, "ivfflat.enabled=true", "ivfflat.nlist=16", "ivfflat.nprobe=[1,3,16]"]
    args = ["experiments", "pq", "--vectors", str(real_vectors), "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(app, args + [a for o in overrides for a in ("--set", o)])
    assert result.exit_code == 0, result.output
    nprobes = sorted(r["search.nprobe"] for r in rows_of(tmp_path / "r"))
    assert nprobes == [1, 3, 16] and set(nprobes) != default
    recalls = [r["recall@10"] for r in sorted(rows_of(tmp_path / "r"), key=lambda r: r["search.nprobe"])]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0  # probing every list is exhaustive


def test_ngt_runs_and_reports_its_footprint(real_vectors: Path, tmp_path: Path) -> None:
    overrides = [*FAST, "ngt.enabled=true", "ngt.graph=[anng]", "ngt.epsilon=[0.0,0.2]"]
    rows = rows_of(run_experiment(str(real_vectors), CONFIG, overrides, tmp_path / "r"))
    assert len(rows) == 2
    assert all(float(r["disk_bytes_per_vector"]) > 4 * 1024 for r in rows)
    low, high = sorted(rows, key=lambda r: r["search.epsilon"])
    assert high["recall@10"] >= low["recall@10"] and float(high["recall@10"]) > 0.8


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("pq.m=[7]", "does not divide the dimension"),
        ("ivfpq.nlist=100000", "larger than the base"),
        ("ivfpq.nprobe=[0]", "positive integer"),
        ("pq.rerank=[5]", "at least k=10"),
        ("hnsw.efsearch=[8]", "unknown key"),
        ("nosuch.key=1", "no section"),
        ("pq.m", "dotted.key=value"),
    ],
)
def test_bad_configuration_is_a_clear_error(real_vectors: Path, tmp_path: Path, override: str, message: str) -> None:
    from cli.main import app

    args = ["experiments", "pq", "--vectors", str(real_vectors), "--out", str(tmp_path / "r"), "--set", override]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()  # refused before any work
    with pytest.raises(ConfigError, match=message):
        run_experiment(str(real_vectors), CONFIG, [override], tmp_path / "r2")


def test_vectors_exported_from_the_store(ingested: Ingested) -> None:
    from niteru.store import open_store

    images = load_vectors("store:image", ingested.settings)
    texts = load_vectors("store:text", ingested.settings)
    with open_store(ingested.settings) as store:
        count = store.count()
        point = next(iter(store.scroll(batch_size=1, with_vectors=True)))[0]
    assert images.shape == (count, 1024) and texts.shape[0] == count
    assert any(np.allclose(row, point.vectors["image"]) for row in images[:1])
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-4)


def test_bad_vector_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="store has vectors"):
        load_vectors("store:colour")
    with pytest.raises(ConfigError, match="no 'products' collection"):
        load_vectors("store:image", Settings(data_dir=tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"\.npy"):
        load_vectors(str(tmp_path / "missing.npy"))
    np.save(tmp_path / "flat.npy", np.zeros(5, np.float32))
    with pytest.raises(ConfigError, match="shape"):
        load_vectors(str(tmp_path / "flat.npy"))
