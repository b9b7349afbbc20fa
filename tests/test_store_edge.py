"""What only the Edge engine has: its owner lock, its alias state file, and the HNSW index built off the
request path (in a child process, on a copy) while the live shard keeps answering and taking writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from niteru.settings import Settings
from niteru.store import SearchFilter, StoreUnavailableError, open_store
from niteru.store.edge import EdgeProductStore
from tests.test_store import DIMS, make_point

OPEN_ELSEWHERE = """
import sys
from niteru.settings import Settings
from niteru.store import StoreUnavailableError, open_store
try:
    open_store(Settings(data_dir=sys.argv[1], store_engine="edge"))
except StoreUnavailableError as exc:
    print(exc)
    sys.exit(3)
"""


# Written out rather than imported from tests.test_store, which imports both engines.
EDGE_ALONE = """
import sys
import numpy as np
from niteru.products import Product, utc_now
from niteru.settings import Settings
from niteru.store import Fusion, ProductPoint, SearchFilter, open_store

rng = np.random.default_rng(2)


def point(i):
    vectors = {n: rng.normal(size=d).astype(np.float32) for n, d in (("image", 16), ("text", 8))}
    product = Product(
        product_id=f"p-{i}", shop_id="s", title=f"product {i}", category=("food", "fashion")[i % 2], image="x.jpg",
        image_sha256="0" * 64, image_version=1, image_model_version="i", text_model_version="t",
        content_hash=str(i), updated_at=utc_now(),
    )
    return ProductPoint(product, {n: v / np.linalg.norm(v) for n, v in vectors.items()})


points = [point(i) for i in range(40)]
with open_store(Settings(data_dir=sys.argv[1], store_engine="edge")) as store:
    store.ensure_collection({"image": 16, "text": 8})
    assert len(store.upsert(points).written) == 40
    for fusion in Fusion:
        hits = store.search(points[3].vectors, {"image": 0.6, "text": 0.4}, 5, SearchFilter(category="food"), fusion)
        assert hits and all(h.product.category == "food" for h in hits)
assert "qdrant_client" not in sys.modules, sorted(m for m in sys.modules if m.startswith("qdrant_client"))[:5]
print("ok")
"""


def edge(tmp_path: Path, **changes: object) -> EdgeProductStore:
    store = open_store(Settings(data_dir=tmp_path, store_engine="edge", **changes))  # type: ignore[arg-type]
    assert isinstance(store, EdgeProductStore)
    return store


def test_a_second_process_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    with edge(tmp_path) as store:
        store.ensure_collection(DIMS)
        done = subprocess.run(
            [sys.executable, "-c", OPEN_ELSEWHERE, str(tmp_path)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 3, done.stderr
        assert "in use by another process" in done.stdout and "--workers" in done.stdout
        assert "WAL" not in done.stdout + done.stderr  # not the engine's own lock error
        with pytest.raises(StoreUnavailableError, match=r"pid \d+"):
            open_store(store.settings)  # a second store in the same process is refused as well
    again = subprocess.run([sys.executable, "-c", OPEN_ELSEWHERE, str(tmp_path)], capture_output=True, timeout=120)
    assert again.returncode == 0  # closed: the next owner may open it


def test_the_edge_engine_runs_without_importing_qdrant_client(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", EDGE_ALONE, str(tmp_path)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_alias_lives_in_an_atomically_replaced_state_file(tmp_path: Path) -> None:
    with edge(tmp_path) as store:
        store.ensure_collection(DIMS)
        first, second = store.current_version(), store.create_version(DIMS)
        store.switch(second)
        state = json.loads((store.settings.store_path / "state.json").read_text())
        assert state["aliases"] == {"products": second}
        assert set(state["dirs"]) == {first, second}
        assert all((store.settings.store_path / d / "edge_config.json").is_file() for d in state["dirs"].values())
        assert not list(store.settings.store_path.glob(".*.tmp"))
        schema = store.shards.get(second).info().payload_schema
        assert {"category", "subcategory", "shop_id", "product_id", "image_version", "price"} <= set(schema)


@pytest.mark.slow  # builds an HNSW index in a child process: the full suite
def test_the_index_builds_off_the_request_path_and_loses_no_write(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    with edge(tmp_path, edge_indexing_threshold_kb=1, edge_index_after=0) as store:
        store.ensure_collection(DIMS)
        points = [make_point(i, 1, rng) for i in range(1500)]
        for i in range(0, len(points), 500):
            store.upsert(points[i : i + 500])
        before = store.info()
        assert before["indexed_vectors"] == 0 and before["points"] == 1500
        version = store.collection
        # Holding the store's lock from the moment the build has copied the shard: the child process
        # indexes the copy, and the swap waits until this block is done with its reads and writes.
        with store.exclusive():
            assert store.build_index(wait=False) is True
            assert store.shards.wait_phase(version, "indexing", timeout=60)
            for i in range(10):  # served by the live, unindexed shard
                assert store.search(points[i].vectors, {"image": 1.0}, 5)[0].product.product_id == f"p-{i}"
            written = store.upsert([make_point(2000 + i, 1, rng) for i in range(20)]).written
            assert len(written) == 20 and store.delete("p-7")
            # (the deleted point's lexical vector stays counted by Edge until its segment is optimized: 1)
            assert store.shards.phase(version) == "indexing" and store.info()["indexed_vectors"] <= 1
        assert store.shards.wait_phase(version, None, timeout=120)
        after = store.info()
        assert after["indexed_vectors"] > 0 and after["collection"] == version
        # The writes made during the build were replayed on the indexed copy.
        assert store.count() == 1500 + 20 - 1
        assert store.get("p-2019") is not None and store.get("p-7") is None
        count = store.count()
    with pytest.raises(StoreUnavailableError, match="closed"):
        store.count()
    with edge(tmp_path) as again:  # the indexed shard is the one the state file names
        assert again.info()["indexed_vectors"] == after["indexed_vectors"] and again.count() == count
        assert len(list(again.settings.store_path.glob("products-*"))) == 1  # the old copy is gone


@pytest.mark.slow  # builds HNSW indexes in child processes: the full suite
def test_an_asked_build_indexes_what_a_background_build_began_without(tmp_path: Path) -> None:
    """Writes past ``edge_index_after`` start a background build on a copy of what is stored then; a build
    asked for afterwards (the end of an ingest, a rebuild's copy) must index the rest too, not just wait for
    that one (it left a rebuilt catalog-dev with the first 5,120 products indexed)."""
    rng = np.random.default_rng(7)
    with edge(tmp_path, edge_indexing_threshold_kb=1, edge_index_after=500) as store:
        store.ensure_collection(DIMS)
        for i in range(0, 1500, 500):
            store.upsert([make_point(j, 1, rng) for j in range(i, i + 500)])  # the first batch starts a build
        store.build_index(wait=True)
        assert store.info()["indexed_vectors"] == 1500 * len(DIMS)


@pytest.mark.slow  # builds an HNSW index in a child process: the full suite
def test_filtered_search_on_the_index_matches_exact_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    with edge(tmp_path, edge_indexing_threshold_kb=1) as store:
        store.ensure_collection(DIMS)
        store.upsert([make_point(i, 1, rng) for i in range(3000)])
        store.build_index()
        assert store.info()["indexed_vectors"] > 0
        recalls = []
        for i in range(0, 300, 10):
            q = make_point(i, 1, rng).vectors
            for f in (None, SearchFilter(category="food"), SearchFilter(category="food", shop_id="shop-1")):
                got = {h.product.product_id for h in store.search(q, {"image": 1.0}, 10, f)}
                want = {h.product.product_id for h in store.search(q, {"image": 1.0}, 10, f, exact=True)}
                recalls.append(len(got & want) / len(want))
        assert np.mean(recalls) >= 0.95


@pytest.mark.slow  # builds an HNSW index in a child process: the full suite
def test_many_writes_start_a_background_build(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    with edge(tmp_path, edge_indexing_threshold_kb=1, edge_index_after=400) as store:
        store.ensure_collection(DIMS)
        store.upsert([make_point(i, 1, rng) for i in range(300)])
        assert not store.info()["index_building"]
        store.upsert([make_point(i, 1, rng) for i in range(300, 600)])
        assert any(t.name.startswith("index-") for t in threading.enumerate())
    with edge(tmp_path) as again:  # close waited for the build
        assert again.info()["indexed_vectors"] > 0 and again.count() == 600


def test_a_narrow_vector_is_searched_by_its_graph_from_as_many_points_as_the_text_vector(tmp_path: Path) -> None:
    """Qdrant's full-scan threshold is in KB: left at its default, the 128-d joint vector would be scanned
    until 20,000 products in a segment, twice the text vector's 10,000 (api_latency-threads.md)."""
    with edge(tmp_path) as store:
        store.ensure_collection({"image": 1024, "text": 256, "joint": 128})
        folder = store.shards.state.dirs[store.collection]
        vectors = json.loads((store.settings.store_path / folder / "edge_config.json").read_text())["vectors"]
    assert vectors["joint"]["hnsw_config"]["full_scan_threshold"] == 10_000 * 128 * 4 // 1024
    assert "hnsw_config" not in vectors["text"] and "hnsw_config" not in vectors["image"]
