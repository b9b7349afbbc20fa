"""The query plan, without an engine: what every fusion and filter asks of the engines.

The engines only translate a plan (``tests/test_store_engines.py`` holds them to the same answers), so
what a search means is decided, and checked, here.
"""

from __future__ import annotations

import numpy as np
import pytest

from niteru.fusion import RULES, Dbsf, Fusion, Rrf, Share, WeightedSum
from niteru.products import point_id
from niteru.store import SearchFilter, StoreSchemaError
from niteru.store.plan import (
    Between,
    Conditions,
    HasId,
    Match,
    Nearest,
    QueryPlan,
    conditions,
    plan_candidates,
    plan_search,
    prefetch_size,
)

DIMS = {"image": 4, "text": 3}
VECTORS = {"image": np.array([1.0, 0, 0, 0], np.float32), "text": np.array([0, 1.0, 0], np.float32)}
FILTERS = {
    "none": None,
    "self": SearchFilter(exclude_product_ids=("p-1",)),
    "category": SearchFilter(category="food", exclude_product_ids=("p-1",)),
    "shop+price": SearchFilter(exclude_shop_id="s-1", subcategory="x", price_min=2.0, price_max=9.5),
}


def plan(
    weights: dict[str, float],
    fusion: Fusion = Fusion.wsum,
    f: SearchFilter | None = None,
    k: int = 10,
    **kw: object,
) -> QueryPlan:
    return plan_search(VECTORS, weights, k, f, fusion, dims=DIMS, rrf_k=60, **kw)  # type: ignore[arg-type]


def test_a_filter_becomes_conditions() -> None:
    assert conditions(None) is None and conditions(SearchFilter()) is None
    assert conditions(FILTERS["category"]) == Conditions(
        must=(Match("category", "food"),), must_not=(HasId((point_id("p-1"),)),)
    )
    assert conditions(FILTERS["shop+price"]) == Conditions(
        must=(Match("subcategory", "x"), Between("price", 2.0, 9.5)), must_not=(Match("shop_id", "s-1"),)
    )


@pytest.mark.parametrize("fusion", list(Fusion))
@pytest.mark.parametrize("where", list(FILTERS))
def test_one_vector_is_a_plain_nearest_search_under_every_fusion(fusion: Fusion, where: str) -> None:
    text = {"text": VECTORS["text"]}
    f = FILTERS[where]
    p = plan_search(text, {"text": 1.0}, 7, f, fusion, dims=DIMS, rrf_k=60, exact=True, with_vectors=True)
    assert p == QueryPlan(Nearest("text", [0.0, 1.0, 0.0]), 7, 7, conditions(FILTERS[where]), (), True, True)


@pytest.mark.parametrize("where", list(FILTERS))
def test_wsum_rescores_the_union_and_sums_normalised_weights(where: str) -> None:
    p = plan({"image": 3.0, "text": 1.0}, Fusion.wsum, FILTERS[where], candidates=20)
    assert p.query == WeightedSum((0.75, 0.25)) and p.limit == 10 and p.filter == conditions(FILTERS[where])
    lists = p.prefetches[0].sources
    assert [x.query.using for x in lists] == ["image", "text"] and all(x.limit == 20 for x in lists)
    assert all(x.filter == p.filter and not x.sources for x in lists)
    # Each vector rescores the union of both filtered lists, so every candidate has both scores.
    assert [(x.query.using, x.limit, x.filter, x.sources) for x in p.prefetches] == [
        ("image", 40, None, lists),
        ("text", 40, None, lists),
    ]


def test_a_zero_weight_list_brings_candidates_under_wsum_only() -> None:
    weights = {"image": 1.0, "text": 0.0}
    assert plan(weights, Fusion.wsum).query == WeightedSum((1.0, 0.0))
    for fusion in (Fusion.wrrf, Fusion.rrf, Fusion.dbsf):
        assert plan(weights, fusion).query == Nearest("image", [1.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("where", list(FILTERS))
@pytest.mark.parametrize(
    ("fusion", "combination"),
    [(Fusion.wrrf, Rrf(60, (0.5, 2.0))), (Fusion.rrf, Rrf(60)), (Fusion.dbsf, Dbsf())],
)
def test_rank_and_distribution_fusions_fuse_the_filtered_lists(fusion: Fusion, combination: object, where: str) -> None:
    p = plan({"image": 0.5, "text": 2.0}, fusion, FILTERS[where], slow_id_filter=True)
    assert p.query == combination and p.filter == conditions(FILTERS[where]) and p.drop_ids == ()
    assert [(x.query.using, x.limit, x.filter, x.sources) for x in p.prefetches] == [
        ("image", prefetch_size(10), p.filter, ()),
        ("text", prefetch_size(10), p.filter, ()),
    ]


def test_an_engine_slow_at_id_filters_drops_the_excluded_ids_after_the_query() -> None:
    only_self = FILTERS["self"]
    p = plan({"image": 1.0, "text": 1.0}, Fusion.wsum, only_self, slow_id_filter=True)
    assert p.filter is None and p.drop_ids == ("p-1",) and p.limit == 11 and p.k == 10
    assert p.prefetches[0].sources[0].limit == prefetch_size(11)
    assert plan({"image": 1.0}, Fusion.rrf, only_self, slow_id_filter=True).drop_ids == ("p-1",)
    # Not when the filter restricts anything else, nor for an engine that filters ids natively.
    assert plan({"image": 1.0}, Fusion.wsum, FILTERS["category"], slow_id_filter=True).drop_ids == ()
    assert plan({"image": 1.0}, Fusion.wsum, only_self).filter == conditions(only_self)


def test_candidate_lists_are_the_fused_lists_of_a_search_for_k() -> None:
    f = FILTERS["category"]
    plans = plan_candidates(VECTORS, 5, f, dims=DIMS)
    assert list(plans) == ["image", "text"]
    assert plans["text"] == QueryPlan(Nearest("text", [0.0, 1.0, 0.0]), 50, 50, conditions(f))
    assert plan_candidates(VECTORS, 5, None, dims=DIMS, candidates=8)["image"].limit == 8


def test_bad_requests_are_refused_before_any_engine() -> None:
    with pytest.raises(ValueError, match="no vector"):
        plan({"image": 0.0, "text": -1.0})
    with pytest.raises(ValueError, match="k must be"):
        plan({"image": 1.0}, k=0)
    with pytest.raises(StoreSchemaError, match="'image' has shape"):
        plan_search({"image": np.ones(2)}, {"image": 1.0}, 3, None, Fusion.wsum, dims=DIMS, rrf_k=60)
    with pytest.raises(StoreSchemaError, match="no vector 'colour'"):
        plan_candidates({"colour": np.ones(2)}, 3, None, dims=DIMS)


def test_every_fusion_has_a_rule_and_its_explanation() -> None:
    assert set(RULES) == set(Fusion)
    share = Share(weight=3.0, total=4.0, cosine=0.8, rank=1, scores=[0.9, 0.8, 0.4])
    assert RULES[Fusion.wsum].contribution(share, 60) == pytest.approx(0.6)
    assert RULES[Fusion.wrrf].contribution(share, 60) == pytest.approx(1 / (2 / 3.0 + 59))
    assert RULES[Fusion.rrf].contribution(share, 60) == pytest.approx(1 / (2 + 59))
    scores = np.array(share.scores)
    mean, sd = scores.mean(), scores.std(ddof=1)
    assert RULES[Fusion.dbsf].contribution(share, 60) == pytest.approx((0.8 - (mean - 3 * sd)) / (6 * sd))
    missing = Share(weight=1.0, total=1.0, cosine=0.5, rank=None, scores=[0.5])
    assert all(RULES[f].contribution(missing, 60) == 0.0 for f in (Fusion.wrrf, Fusion.rrf, Fusion.dbsf))
