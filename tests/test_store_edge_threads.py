"""The Edge search pool's size (``edge_search_threads``): it reaches the engine when a shard is created and
when one is opened, it leaves with the setting (a count Edge kept in the shard's config file would
otherwise stick), and it changes no answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from niteru.settings import Settings
from niteru.store import SearchFilter, open_store
from niteru.store.edge import EdgeProductStore
from tests.test_store import DIMS, make_point

# The threads of a fresh process that opened the store and searched it once: two such processes differ by
# the difference of their search pools as the engine made them, whatever the config file says. (Counted,
# not named: a pool thread names itself once it runs, which may be after the count.)
COUNT_THREADS = """
import os, sys
from niteru.settings import Settings
from niteru.store import open_store
with open_store(Settings(data_dir=sys.argv[1], store_engine="edge")) as store:
    store.count()
    print(len(os.listdir("/proc/self/task")))
"""


def edge(tmp_path: Path, threads: int | None) -> EdgeProductStore:
    store = open_store(Settings(data_dir=tmp_path, store_engine="edge", edge_search_threads=threads))
    assert isinstance(store, EdgeProductStore)
    return store


def shard_config(store: EdgeProductStore) -> dict[str, object]:
    folder = store.shards.state.dirs[store.collection]
    config: dict[str, object] = json.loads((store.settings.store_path / folder / "edge_config.json").read_text())
    return config


def answers(store: EdgeProductStore) -> list[list[tuple[str, float]]]:
    rng = np.random.default_rng(11)
    out = []
    for i in range(20):
        q = make_point(i, 1, rng).vectors
        for f in (None, SearchFilter(category="food")):
            hits = store.search(q, {"image": 0.7, "text": 0.3}, 10, f)
            out.append([(h.product.product_id, round(h.score, 6)) for h in hits])
    return out


def test_the_search_threads_reach_the_shard_and_leave_with_the_setting(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    with edge(tmp_path, 1) as store:
        store.ensure_collection(DIMS)
        for i in range(0, 600, 200):  # several writes: more than one segment to search
            store.upsert([make_point(j, 1, rng) for j in range(i, i + 200)])
        assert shard_config(store)["max_search_threads"] == 1
        one = answers(store)
    with edge(tmp_path, None) as store:
        assert answers(store) == one  # (the first call loads the shard)
        assert "max_search_threads" not in shard_config(store)  # the engine's default again, not the last count
    with edge(tmp_path, 3) as store:
        assert answers(store) == one
        assert shard_config(store)["max_search_threads"] == 3


def test_the_engine_sizes_its_pool_from_the_setting(tmp_path: Path) -> None:
    with edge(tmp_path, None) as store:
        store.ensure_collection(DIMS)
        store.upsert([make_point(i, 1, np.random.default_rng(12)) for i in range(50)])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def threads(search_threads: int) -> int:
        extra = {"NITERU_EDGE_SEARCH_THREADS": str(search_threads)}
        run = [sys.executable, "-c", COUNT_THREADS, str(tmp_path)]
        done = subprocess.run(run, capture_output=True, text=True, timeout=120, env=env | extra, check=True)
        return int(done.stdout.strip())

    assert threads(5) - threads(2) == 3
