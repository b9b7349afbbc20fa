"""The Edge store across index swaps and crashes: reads in progress survive a swap (the replaced shard
closes when its last reader is done), and what a crash leaves behind (shard copies, the index child
process) is cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from niteru.settings import Settings
from niteru.store import open_store
from niteru.store.edge import EdgeProductStore
from tests.test_store import DIMS, make_point

N = 300


def indexed_store(tmp_path: Path) -> EdgeProductStore:
    """A store worth indexing (its threshold is tiny), filled and not yet indexed."""
    store = open_store(Settings(data_dir=tmp_path, store_engine="edge", edge_indexing_threshold_kb=1))
    assert isinstance(store, EdgeProductStore)
    store.ensure_collection(DIMS)
    rng = np.random.default_rng(11)
    store.upsert([make_point(i, 1, rng) for i in range(N)])
    return store


def ids(pages: Any) -> list[str]:
    return [p.product.product_id for page in pages for p in page]


def test_reads_holding_the_shard_across_an_index_swap_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scroll started before a swap and consumed after it, and a read that picked up the shard just
    before the swap and calls it after the old shard was retired: both complete, nothing missing."""
    with indexed_store(tmp_path) as store:
        version = store.collection
        scroll = store.scroll(batch_size=100, with_vectors=False)
        first = next(scroll)
        picked, swapped = threading.Event(), threading.Event()
        real_get, seen, errors = store.shards.get, [], []

        def get_then_wait(v: str) -> Any:
            shard = real_get(v)
            if threading.current_thread().name == "reader" and not picked.is_set():
                picked.set()
                swapped.wait()
            return shard

        def read() -> None:
            try:
                seen.extend(ids(store.scroll(batch_size=100, with_vectors=False)))
            except Exception as exc:  # reported below
                errors.append(exc)

        monkeypatch.setattr(store.shards, "get", get_then_wait)
        reader = threading.Thread(target=read, name="reader")
        reader.start()
        assert picked.wait(60)
        assert store.build_index(wait=True)
        store.shards._builds[version].join()  # the build is over: whatever it retires is retired
        swapped.set()
        reader.join(60)
        assert not errors, errors
        assert sorted(seen) == sorted(f"p-{i}" for i in range(N))
        rest = ids(scroll)
        assert sorted([p.product.product_id for p in first] + rest) == sorted(seen)
        assert store.info()["indexed_vectors"] > 0


def test_the_replaced_shard_closes_when_its_last_reader_is_done(tmp_path: Path) -> None:
    with indexed_store(tmp_path) as store:
        version = store.collection
        old_dir = store.settings.store_path / store.shards.state.dirs[version]
        with store.shards._leases.leased(version) as old:
            assert store.build_index(wait=True)
            store.shards._builds[version].join()
            assert store.shards.state.dirs[version] != old_dir.name
            assert old_dir.is_dir() and int(old.info().points_count) == N  # still open for this reader
        assert not old_dir.exists()  # the last reader closed it and removed its folder
        assert store.count() == N


def test_a_crash_during_a_build_leaves_nothing_behind(tmp_path: Path) -> None:
    """A shard copy the state file does not name (the build's process died before the swap) is removed
    when the store opens again; the live shard is untouched."""
    with indexed_store(tmp_path) as store:
        live = store.shards.state.dirs[store.collection]
    root = Settings(data_dir=tmp_path).store_path
    orphan = root / f"{live.rsplit('.', 1)[0]}.9"
    subprocess.run(["cp", "-r", str(root / live), str(orphan)], check=True)
    with indexed_store(tmp_path) as again:
        assert not orphan.exists() and (root / live).is_dir()
        assert again.count() == N


CHILD = """
import sys, time
from niteru.store.edge_index import die_with
assert die_with(int(sys.argv[1]))
print("armed", flush=True)
time.sleep(600)
"""

PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(__import__("os").getpid())], stdout=subprocess.PIPE)
assert child.stdout.readline().strip() == b"armed"
print(child.pid, flush=True)
child.wait()
"""


def test_the_index_child_dies_with_its_parent() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD], stdout=subprocess.PIPE, env=env)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    # The kernel sends SIGKILL to the child when its parent dies: wait for it to be gone.
    done = subprocess.run(
        ["sh", "-c", f"while kill -0 {child} 2>/dev/null && ! grep -q zombie /proc/{child}/status; do :; done"],
        timeout=30,
        check=False,
    )
    assert done.returncode == 0
