"""Delete tombstones on both engines: a delete leaves its version, so an older write still in flight is
refused as stale instead of bringing the product back; a newer write is taken; tombstones never show in
reads and expire."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from niteru.settings import Settings
from niteru.store import ProductStore, open_store
from tests.test_store import DIMS, ENGINES, make_point


def opened(tmp_path: Path, engine: str, **changes: Any) -> ProductStore:
    store = open_store(Settings(data_dir=tmp_path, store_engine=engine, **changes))
    store.ensure_collection(DIMS)
    return store


@pytest.fixture(params=ENGINES)
def store(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ProductStore]:
    with opened(tmp_path, request.param) as s:
        yield s


def test_an_older_write_after_a_delete_is_stale_a_newer_one_is_taken(store: ProductStore) -> None:
    rng = np.random.default_rng(1)
    store.upsert([make_point(i, 100, rng) for i in range(3)])
    assert store.delete("p-0", version=200)
    late = store.upsert([make_point(0, 150, rng)])  # e.g. a redelivered task submitted before the delete
    assert late.stale == ["p-0"] and late.written == []
    assert store.upsert([make_point(0, 200, rng)]).stale == ["p-0"]  # the delete wins a tie
    assert store.get("p-0") is None
    assert store.upsert([make_point(0, 201, rng)]).written == ["p-0"]  # a write after the delete
    stored = store.get("p-0")
    assert stored is not None and stored.product.image_version == 201


def test_a_delete_keeps_a_newer_image(store: ProductStore) -> None:
    rng = np.random.default_rng(2)
    store.upsert([make_point(0, 300, rng)])
    assert not store.delete("p-0", version=200)
    assert store.get("p-0") is not None


def test_tombstones_never_show_in_reads(store: ProductStore) -> None:
    rng = np.random.default_rng(3)
    points = [make_point(i, 100, rng) for i in range(5)]
    store.upsert(points)
    for i in range(3):
        assert store.delete(f"p-{i}", version=200)
    assert store.count() == 2
    assert sorted(p.product.product_id for b in store.scroll() for p in b) == ["p-3", "p-4"]
    hits = store.search(points[0].vectors, {"image": 0.5, "text": 0.5}, 10)
    assert sorted(h.product.product_id for h in hits) == ["p-3", "p-4"]
    assert store.get("p-1") is None and store.versions() == [store.current_version()]


def test_a_delete_racing_a_write_is_not_undone(store: ProductStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The delete (tombstone and point removal) lands between the write's read and its write."""
    rng = np.random.default_rng(4)
    store.upsert([make_point(0, 100, rng)])
    write, raced = store._write, list[bool]()

    def delete_first(version: str, *args: Any) -> None:
        if not raced and version == store.collection:
            raced.append(True)
            assert store.delete("p-0", version=200)
        write(version, *args)

    monkeypatch.setattr(store, "_write", delete_first)
    assert store.upsert([make_point(0, 150, rng)]).stale == ["p-0"]
    assert raced and store.get("p-0") is None


@pytest.mark.parametrize("engine", ENGINES)
def test_tombstones_expire(tmp_path: Path, engine: str) -> None:
    rng = np.random.default_rng(5)
    with opened(tmp_path, engine, tombstone_ttl=1e-6) as store:  # expired as soon as written
        store.upsert([make_point(0, 100, rng)])
        assert store.delete("p-0", version=200)
        assert store.tombstones.versions(["p-0"]) == {}
        assert store.upsert([make_point(0, 150, rng)]).written == ["p-0"]
