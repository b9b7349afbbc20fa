"""Writers racing each other on both engines: a concurrent write landing between the conditional upsert's
read and its write (the interleaving is forced by running the other writer's real write at that moment)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from niteru.settings import Settings
from niteru.store import ProductStore, open_store
from niteru.store.plan import version_at_most
from niteru.store.records import to_row
from tests.test_store import DIMS, ENGINES, make_point


@pytest.fixture(params=ENGINES)
def store(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ProductStore]:
    s = open_store(Settings(data_dir=tmp_path, store_engine=request.param))
    s.ensure_collection(DIMS)
    yield s
    s.close()


def test_a_batch_keeps_its_newest_item_when_a_middle_version_lands_first(
    store: ProductStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch is written with its lowest version as the condition; another writer stores p-1 at a
    version between that and the batch's own version for p-1 just before. p-1's newer version must win."""
    rng = np.random.default_rng(3)
    store.upsert([make_point(0, 100, rng), make_point(1, 100, rng)])
    write = store._write
    raced: list[bool] = []

    def racing_write(*args: Any) -> None:
        if not raced:
            raced.append(True)
            write(store.collection, [to_row(make_point(1, 150, rng))], version_at_most(150))
        write(*args)

    monkeypatch.setattr(store, "_write", racing_write)
    outcome = store.upsert([make_point(0, 110, rng), make_point(1, 200, rng)])
    assert raced
    assert sorted(outcome.written) == ["p-0", "p-1"] and outcome.stale == []
    stored = store.get("p-1")
    assert stored is not None and stored.product.image_version == 200
