"""The rebuild on a copy of the ingested slice: queries go on, writes made meanwhile survive, rollback.

The rebuild runs in a thread of this process (the embedded store admits one process: in the embedded
deployment the rebuild runs where the store is open), while another thread queries in a loop. Writes and
deletes go through the same store at the rebuild's ``after_copy`` hook, between its copy and its catch-up,
so the test knows the catch-up had them to carry over.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from niteru.embedders import ProductInput, embed_products
from niteru.fusion import Fusion
from niteru.model_sync import ModelSync
from niteru.products import ProductFields, now_version
from niteru.rebuild import RebuildError, RebuildReport, rebuild, rebuild_lock, rollback
from niteru.route_table import RouteTable, Row, load_route_table, save_route_table
from niteru.settings import Settings
from niteru.similar import SimilarOptions, similar_products
from niteru.store import ProductPoint, ProductStore, open_store
from tests.store_fixtures import Ingested

pytestmark = [pytest.mark.weights, pytest.mark.catalog, pytest.mark.slow]
# These tests are about writes and swaps, not relevance: without the gate (tests/test_rebuild_gate.py), whose
# sample of this 48-product slice moves a measure by two points per query and may refuse the swap.
NO_GATE = {"rebuild_gate_sample": 0}


def test_rebuild_swaps_while_queries_continue_and_keeps_writes_made_meanwhile(
    ingested: Ingested, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(ingested.settings.data_dir, data)
    # route_fit_min_queries 2: the 51-product slice has about 10 validation queries; the fit is under test
    settings = Settings(**{**ingested.settings.model_dump(), "data_dir": data, **NO_GATE, "route_fit_min_queries": 2})
    src = ingested.good[5]
    new_point = embed_products(
        [
            ProductInput(
                "written-during-rebuild",
                ProductFields(shop_id="s", title=src.title, category=src.category),
                (ingested.catalog / src.image).read_bytes(),
                src.image,
                now_version(),
            )
        ],
        ingested.embedders,
    )[0]
    assert isinstance(new_point, ProductPoint)
    doomed = ingested.good[6].product_id
    renamed = ingested.good[7].product_id
    with open_store(settings) as store:
        before = store.current_version()
        count = store.count()
        # an older collection with a routing table of its own: the rebuild drops both
        stale = store.create_version(ingested.embedders.dims)
        stale_table = RouteTable("stale@0", stale, "precision@10", Row({"image": 0.5, "text": 0.5}, Fusion.wsum), {})
        save_route_table(settings, stale_table)
        assert load_route_table(settings, stale) == stale_table
        query_ids = [r.product_id for r in ingested.good[:5]]
        answered: list[int] = []
        errors: list[BaseException] = []
        done = threading.Event()
        result: dict[str, RebuildReport] = {}

        def query_loop() -> None:
            while not done.is_set():
                for pid in query_ids:
                    try:
                        answered.append(len(similar_products(store, pid, settings, SimilarOptions(k=5)).hits))
                    except BaseException as exc:
                        errors.append(exc)

        def write_meanwhile(copy: ProductStore) -> None:
            """Called by the rebuild between its copy and its catch-up: add, rename and delete through the
            live alias. The copy holds none of these changes, so only the catch-up can carry them over."""
            assert copy.get("written-during-rebuild") is None and copy.get(doomed) is not None
            store.upsert([new_point])
            old = store.get(renamed, with_vectors=True)
            assert old is not None
            product = old.product.model_copy(update={"title": "Renamed during the rebuild"})
            store.upsert([ProductPoint(product, old.vectors)])
            store.delete(doomed)

        def run() -> None:
            try:
                result["report"] = rebuild(store, settings, after_copy=write_meanwhile)
            except BaseException as exc:
                errors.append(exc)

        reader = threading.Thread(target=query_loop)
        builder = threading.Thread(target=run)
        reader.start()
        builder.start()
        builder.join(timeout=600)
        done.set()
        reader.join(timeout=60)

        assert not errors, errors[:3]
        report = result["report"]
        assert store.current_version() != before and store.current_version() == report.current
        assert answered and all(n == 5 for n in answered)
        # the catch-up carried over exactly the three changes: nothing written meanwhile is lost, nothing
        # deleted comes back, and what it carried has text vectors of the new model
        assert report.caught_up == 3
        written = store.get("written-during-rebuild")
        assert written is not None and written.product.text_model_version == report.text_model
        changed = store.get(renamed)
        assert changed is not None and changed.product.title == "Renamed during the rebuild"
        assert changed.product.text_model_version == report.text_model
        assert store.get(doomed) is None
        assert store.count() == count  # one added, one deleted
        assert before in store.versions()  # kept for rollback

        # another process that still holds the old text model finds the live collection's on its next check
        sync = ModelSync(settings, before)
        reloaded = sync.check(store, ingested.embedders.text.version, force=True)
        assert reloaded is not None and reloaded.collection == report.current
        assert reloaded.text is not None and reloaded.text.version == report.text_model
        assert reloaded.text.version != ingested.embedders.text.version
        assert sync.check(store, reloaded.text.version, force=True) is None  # nothing new since
        # and the routing table the rebuild fitted on the new collection, saved with it
        fitted = load_route_table(settings, report.current)
        assert report.routing is not None and fitted is not None and fitted.version == report.routing
        assert reloaded.routing == fitted and fitted.info["products"] == count
        assert stale in report.dropped and stale not in store.versions()
        assert load_route_table(settings, stale) is None

        with rebuild_lock(settings), pytest.raises(RebuildError, match="another rebuild"):
            rebuild(store, settings)
        assert rollback(store, settings) == before
        assert store.current_version() == before


def test_with_a_server_the_rebuild_lock_is_held_in_redis(tmp_path: Path) -> None:
    """Two hosts (two data folders: the file lock cannot see the other) share the Redis lock."""
    alias = f"lock-test-{time.time_ns()}"
    common = {
        "qdrant_url": "http://127.0.0.1:1",
        "celery_broker_url": "redis://127.0.0.1:6379/14",
        "store_alias": alias,
    }
    host_a = Settings(data_dir=tmp_path / "a", **common)  # type: ignore[arg-type]
    host_b = Settings(data_dir=tmp_path / "b", **common)  # type: ignore[arg-type]
    with rebuild_lock(host_a), pytest.raises(RebuildError, match="Redis rebuild lock"), rebuild_lock(host_b):
        pass
    with rebuild_lock(host_b):  # released when the first rebuild ended
        pass
    unreachable = Settings(data_dir=tmp_path / "c", **{**common, "celery_broker_url": "redis://127.0.0.1:1/0"})  # type: ignore[arg-type]
    with pytest.raises(RebuildError, match="cannot reach Redis"), rebuild_lock(unreachable):
        pass


def test_a_product_added_after_the_catch_up_does_not_refuse_the_rebuild(
    ingested: Ingested, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shop keeps writing during the daily rebuild: a product created between the catch-up and the count
    must be carried over, not make the copy look broken (the soak refused rebuilds this way)."""
    import niteru.rebuild

    data = tmp_path / "data"
    shutil.copytree(ingested.settings.data_dir, data)
    settings = Settings(**{**ingested.settings.model_dump(), "data_dir": data, **NO_GATE})
    catch_up = niteru.rebuild._catch_up
    with open_store(settings) as store:
        source = store.get(ingested.good[3].product_id, with_vectors=True)
        assert source is not None
        late = ProductPoint(
            source.product.model_copy(update={"product_id": "created-after-the-catch-up"}), source.vectors
        )

        def catch_up_then_create(live: ProductStore, target: ProductStore, text: object, passes: int) -> int:
            caught = catch_up(live, target, text, passes)  # type: ignore[arg-type]
            if passes > 1:  # the long catch-up is done; a PUT of a new product lands now
                assert live.upsert([late]).written == [late.product.product_id]
            return caught

        monkeypatch.setattr(niteru.rebuild, "_catch_up", catch_up_then_create)
        count = store.count()
        report = rebuild(store, settings)
        assert store.current_version() == report.current
        assert store.count() == count + 1
        carried = store.get(late.product.product_id)
        assert carried is not None and carried.product.text_model_version == report.text_model
