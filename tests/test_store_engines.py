"""The two engines side by side: the same data in both gives the same answers and the same errors, and
the versioned collections (create, pinned, switch, drop, reopen) behave alike.

Small data, so Edge's search is exact (below its full-scan threshold) like qdrant-client's local mode:
the rankings must be identical, the scores equal to float32 rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from niteru.settings import Settings
from niteru.store import (
    Fusion,
    Hit,
    ProductPoint,
    ProductStore,
    SearchFilter,
    StoreSchemaError,
    StoreUnavailableError,
    UnknownCollectionError,
    open_store,
)
from tests.test_store import DIMS, ENGINES, make_point

FILTERS = {
    "none": None,
    "self": SearchFilter(exclude_product_ids=("p-4",)),
    "category": SearchFilter(category="food", exclude_product_ids=("p-4",)),
    "shop+price": SearchFilter(exclude_shop_id="shop-1", price_min=None, price_max=None, subcategory="x"),
}


def same(a: list[Hit], b: list[Hit]) -> None:
    assert [h.product.product_id for h in a] == [h.product.product_id for h in b]
    assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
    assert [h.product for h in a] == [h.product for h in b]


@pytest.mark.parametrize("fusion", list(Fusion))
@pytest.mark.parametrize("where", list(FILTERS))
def test_both_engines_rank_alike(
    both: tuple[ProductStore, ProductStore, list[ProductPoint]], fusion: Fusion, where: str
) -> None:
    edge, local, points = both
    query = points[4].vectors
    for weights in ({"image": 1.0, "text": 0.2}, {"image": 0.5, "text": 0.5}, {"image": 0.2, "text": 1.0}):
        found = edge.search(query, weights, 12, FILTERS[where], fusion)
        assert found, "a query that finds nothing compares nothing"
        same(found, local.search(query, weights, 12, FILTERS[where], fusion))
    for name in ("image", "text"):
        same(edge.search(query, {name: 1.0}, 7, FILTERS[where]), local.search(query, {name: 1.0}, 7, FILTERS[where]))


def test_both_engines_give_the_same_candidate_lists_and_vectors(
    both: tuple[ProductStore, ProductStore, list[ProductPoint]],
) -> None:
    edge, local, points = both
    query = points[9].vectors
    a, b = edge.candidate_lists(query, 5, FILTERS["category"]), local.candidate_lists(query, 5, FILTERS["category"])
    assert a.keys() == b.keys() == {"image", "text"}
    for name in a:
        same(a[name], b[name])
    hits_a = edge.search(query, {"image": 1.0, "text": 1.0}, 3, with_vectors=True)
    hits_b = local.search(query, {"image": 1.0, "text": 1.0}, 3, with_vectors=True)
    for x, y in zip(hits_a, hits_b, strict=True):
        np.testing.assert_allclose(x.vectors["image"], y.vectors["image"], atol=1e-6)
    scrolled = [
        [p.product.product_id for b in s.scroll(batch_size=16, with_vectors=False) for p in b] for s in (edge, local)
    ]
    assert sorted(scrolled[0]) == sorted(scrolled[1]) and len(scrolled[0]) == len(points)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_same_bad_calls_raise_the_same_errors(tmp_path: Path, engine: str) -> None:
    with open_store(Settings(data_dir=tmp_path, store_engine=engine)) as store:
        with pytest.raises(StoreUnavailableError, match="no 'products' collection"):
            store.count()
        store.ensure_collection(DIMS)
        rng = np.random.default_rng(0)
        point = make_point(1, 1, rng)
        store.upsert([point])
        with pytest.raises(ValueError, match="no vector"):
            store.search(point.vectors, {"image": 0.0, "text": 0.0}, 3)
        with pytest.raises(ValueError, match="k must be"):
            store.search(point.vectors, {"image": 1.0}, 0)
        with pytest.raises(StoreSchemaError, match="'image' has shape"):
            store.search({"image": np.ones(5, np.float32)}, {"image": 1.0}, 3)
        with pytest.raises(StoreSchemaError, match="no vector 'colour'"):
            store.candidate_lists({"colour": np.ones(5, np.float32)}, 3)
        bad = ProductPoint(
            make_point(2, 1, rng).product, {"image": np.ones(3, np.float32), "text": point.vectors["text"]}
        )
        with pytest.raises(StoreSchemaError):
            store.upsert([bad])
        with pytest.raises(UnknownCollectionError):
            store.switch("products-nope")
        with pytest.raises(UnknownCollectionError):
            store.pinned("products-nope")
        with pytest.raises(ValueError, match="current collection"):
            store.drop(store.current_version())
        with pytest.raises(StoreSchemaError, match="text"):
            store.ensure_collection({"image": 16, "text": 9})
        assert store.count() == 1  # nothing of the above wrote anything


@pytest.mark.parametrize("engine", ENGINES)
def test_versioned_collections_switch_atomically_and_survive_a_reopen(tmp_path: Path, engine: str) -> None:
    settings = Settings(data_dir=tmp_path, store_engine=engine)
    rng = np.random.default_rng(3)
    with open_store(settings) as store:
        store.ensure_collection(DIMS)
        store.upsert([make_point(i, 1, rng) for i in range(5)])
        first = store.current_version()
        second = store.create_version(DIMS)
        assert store.versions() == [first, second] and store.current_version() == first
        view = store.pinned(second)
        view.upsert([make_point(i, 1, rng) for i in range(3)])
        view.close()  # closes nothing: the view shares the store
        assert (store.count(), view.count()) == (5, 3)
        with store.exclusive():
            store.switch(second)
        assert store.current_version() == second and store.count() == 3
        assert store.get("p-4") is None and store.pinned(first).get("p-4") is not None
        store.build_index()  # an index build (or nothing, for local mode) keeps every answer
        assert store.count() == 3 and store.search(make_point(0, 1, rng).vectors, {"image": 1.0}, 3)
    with open_store(settings) as again:
        assert again.current_version() == second and again.count() == 3
        again.switch(first)
        again.drop(second)
        assert again.versions() == [first] and again.count() == 5
    with open_store(settings) as third:
        assert third.current_version() == first and third.versions() == [first]
