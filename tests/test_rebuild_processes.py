"""A rebuild against a store other processes write to (workers on a Qdrant server): what they write to the
old collection during the last catch-up, and after the swap through a store that still resolved the old
collection's name, is in the live collection afterwards.

Run on qdrant-client's local mode, which is the server engine's code path on the client side; two store
objects over one client stand for two processes (each resolves and caches the alias on its own). Local
mode cannot show what only a server has: requests of several processes truly in flight at once, and the
server resolving the alias of a request already under way while the alias moves.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

import niteru.rebuild
from niteru.rebuild import rebuild
from niteru.settings import Settings
from niteru.store import CollectionMovedError, ProductPoint, ProductStore, open_store
from niteru.store.migrate import migrate
from tests.store_fixtures import Ingested

pytestmark = [pytest.mark.weights, pytest.mark.catalog, pytest.mark.slow]


def other_process(store: ProductStore) -> ProductStore:
    """Another process's store on the same collections: its own idea of the alias, resolved now."""
    other = copy.copy(store)
    assert other.current_version() == store.current_version()
    return other


def renamed(store: ProductStore, product_id: str, title: str) -> ProductPoint:
    point = store.get(product_id, with_vectors=True)
    assert point is not None
    return ProductPoint(point.product.model_copy(update={"title": title}), point.vectors)


def test_writes_of_another_process_around_the_swap_reach_the_live_collection(
    ingested: Ingested, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    shutil.copytree(ingested.settings.data_dir, data)
    # No gate (tests/test_rebuild_gate.py): this test is about writes around the swap, and must swap.
    base = {**ingested.settings.model_dump(), "data_dir": data, "rebuild_gate_sample": 0}
    settings = Settings(**{**base, "store_engine": "qdrant"})
    with open_store(Settings(**base)) as source, open_store(settings) as store:
        migrate(source, store)
        ids = [r.product_id for r in ingested.good[:6]]
        worker = other_process(store)
        old = worker.collection
        catch_up = niteru.rebuild._catch_up

        wrote: list[bool] = []

        def last_catch_up_then_write(live: ProductStore, target: ProductStore, text: Any, passes: int) -> int:
            caught = catch_up(live, target, text, passes)
            if passes == 1 and not wrote:  # the last catch-up has read the old collection: the swap comes next
                wrote.append(True)
                assert worker.upsert([renamed(worker, ids[0], "Renamed during the swap")]).written == [ids[0]]
                assert worker.delete(ids[1])
            return caught

        monkeypatch.setattr(niteru.rebuild, "_catch_up", last_catch_up_then_write)
        report = rebuild(store, settings)
        assert store.current_version() == report.current != old
        assert worker.collection == old  # it still resolves the old name
        # Its write lands in the old collection; it finds the alias moved and does not acknowledge it (its
        # text vector is of the old model); its caller refreshes the models and writes again.
        with pytest.raises(CollectionMovedError):
            worker.upsert([renamed(worker, ids[2], "Renamed after the swap")])
        assert worker.collection == report.current
        assert worker.upsert([renamed(store, ids[2], "Renamed after the swap")]).written == [ids[2]]
        worker._collection = old  # type: ignore[attr-defined]  # again resolving the old name
        assert worker.delete(ids[3])  # a delete carries no vector: made again in the live collection

        live = store.pinned(report.current)
        first = live.get(ids[0])
        assert first is not None and first.product.title == "Renamed during the swap"
        assert first.product.text_model_version == report.text_model  # re-embedded by the re-sync
        assert live.get(ids[1]) is None and live.get(ids[3]) is None
        third = live.get(ids[2])
        assert third is not None and third.product.title == "Renamed after the swap"
        assert live.count() == store.pinned(old).count()
        assert worker.collection == report.current  # its delete found the alias moved
