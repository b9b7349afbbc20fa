"""Diversity (maximal marginal relevance) through the query plan, on both engines.

One vector: each engine runs Qdrant's own MMR (``qdrant_edge.Mmr``, qdrant-client's ``NearestQuery.mmr``).
Fused: the engine fuses the MMR candidates and ``niteru.store.mmr`` picks among them. The service's rule
is held to the engines' on one vector, the engines to each other on every fusion, and a store where one
shop's near-copies fill the first page shows more shops with diversity. Expected results come from
numpy or from the other path, never written down.
"""

from __future__ import annotations

import numpy as np
import pytest

from niteru.products import Product, utc_now
from niteru.settings import Settings
from niteru.store import Fusion, Hit, ProductPoint, ProductStore, SearchFilter, open_store
from niteru.store.mmr import diversify, mmr_order, weighted_rows
from niteru.store.plan import MMR_MAX_CANDIDATES, Mmr, Nearest, QueryPlan, plan_search, prefetch_size
from tests.test_store import DIMS, ENGINES, make_point, unit

SELF = SearchFilter(exclude_product_ids=("p-4",))
WEIGHTS = ({"image": 1.0, "text": 0.2}, {"image": 0.5, "text": 0.5}, {"image": 0.2, "text": 1.0})
SHOPS_COPYING = 12


def plan(weights: dict[str, float], **kw: object) -> QueryPlan:
    vectors = {n: np.eye(d, dtype=np.float32)[0] for n, d in DIMS.items() if n in weights}
    return plan_search(vectors, weights, 10, SELF, Fusion.wsum, dims=DIMS, rrf_k=60, **kw)  # type: ignore[arg-type]


def ids(hits: list[Hit]) -> list[str]:
    return [h.product.product_id for h in hits]


def same(a: list[Hit], b: list[Hit]) -> None:
    assert ids(a) == ids(b)
    assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


# --- the plan ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", list(Fusion))
def test_diversity_zero_is_todays_plan(fusion: Fusion) -> None:
    vectors = {n: np.eye(d, dtype=np.float32)[1] for n, d in DIMS.items()}
    for weights in WEIGHTS:
        for slow in (False, True):
            args = (vectors, weights, 10, SELF, fusion)
            before = plan_search(*args, dims=DIMS, rrf_k=60, slow_id_filter=slow)
            assert plan_search(*args, dims=DIMS, rrf_k=60, slow_id_filter=slow, diversity=0.0) == before
            assert before.mmr is None


def test_one_vector_asks_the_engine_for_mmr() -> None:
    p = plan({"image": 1.0}, diversity=0.4, slow_id_filter=True)
    assert isinstance(p.query, Nearest) and p.limit == 10
    assert p.mmr == Mmr(0.4, prefetch_size(10)) and p.service_mmr is None
    # MMR compares candidates with each other: the query product must be filtered out, not dropped after.
    assert p.drop_ids == () and p.filter is not None and not p.fetch_vectors


def test_a_fused_query_fuses_the_candidates_and_leaves_mmr_to_the_service() -> None:
    p = plan({"image": 3.0, "text": 1.0}, diversity=0.5)
    assert p.limit == prefetch_size(10) and p.k == 10
    near = tuple(Nearest(n, [1.0] + [0.0] * (d - 1)) for n, d in DIMS.items())
    assert p.service_mmr == Mmr(0.5, prefetch_size(10), near, (3.0, 1.0))
    assert p.fetch_vectors and not p.with_vectors


def test_mmr_candidates_are_a_few_times_k_up_to_a_ceiling_but_never_fewer_than_k() -> None:
    vectors = {"image": np.eye(DIMS["image"], dtype=np.float32)[0]}
    for k, want in ((10, prefetch_size(10)), (400, MMR_MAX_CANDIDATES), (1500, 1500)):
        p = plan_search(vectors, {"image": 1.0}, k, None, Fusion.wsum, dims=DIMS, rrf_k=60, diversity=0.5)
        assert p.mmr is not None and p.mmr.candidates == want


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_a_diversity_outside_zero_to_one_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="diversity"):
        plan({"image": 1.0}, diversity=bad)


def test_mmr_picks_the_most_relevant_then_trades_relevance_for_novelty() -> None:
    relevance = np.array([0.9, 0.85, 0.5])
    similarity = np.array([[1.0, 0.99, 0.1], [0.99, 1.0, 0.1], [0.1, 0.1, 1.0]])
    row = similarity.__getitem__
    assert mmr_order(relevance, row, 0.0, 3) == [0, 1, 2]
    # 0.5 * 0.85 - 0.5 * 0.99 = -0.07 loses to 0.5 * 0.5 - 0.5 * 0.1 = 0.2: the near-copy waits
    assert mmr_order(relevance, row, 0.5, 3) == [0, 2, 1]
    assert mmr_order(relevance, row, 0.5, 2) == [0, 2] and mmr_order(relevance[:0], row, 0.5, 2) == []


def test_a_dot_product_of_weighted_rows_is_the_weighted_mean_cosine() -> None:
    rng = np.random.default_rng(2)
    hits = [Hit(make_point(i, 1, rng).product, 0.0, {n: 3 * unit(rng, d) for n, d in DIMS.items()}) for i in range(4)]
    hits.append(Hit(make_point(9, 1, rng).product, 0.0, {"text": unit(rng, DIMS["text"])}))  # no image vector
    query = [("image", unit(rng, DIMS["image"]), 3.0), ("text", unit(rng, DIMS["text"]), 1.0)]
    rows, query_row = weighted_rows(hits, query)

    def cos(a: np.ndarray | None, b: np.ndarray | None) -> float:
        return 0.0 if a is None or b is None else float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    for i, h in enumerate(hits):
        want = 0.75 * cos(h.vectors.get("image"), query[0][1]) + 0.25 * cos(h.vectors["text"], query[1][1])
        assert rows[i] @ query_row == pytest.approx(want, abs=1e-5)
        other = hits[(i + 1) % len(hits)].vectors
        want = 0.75 * cos(h.vectors.get("image"), other.get("image")) + 0.25 * cos(h.vectors["text"], other["text"])
        assert rows[i] @ rows[(i + 1) % len(hits)] == pytest.approx(want, abs=1e-5)


# --- both engines --------------------------------------------------------------------------------------
@pytest.mark.parametrize("diversity", [0.3, 0.6, 0.9])
@pytest.mark.parametrize("name", ["image", "text"])
def test_both_engines_run_qdrants_mmr_and_the_service_rule_is_the_same(
    both: tuple[ProductStore, ProductStore, list[ProductPoint]], name: str, diversity: float
) -> None:
    edge, local, points = both
    query = {name: points[4].vectors[name]}
    found = edge.search(query, {name: 1.0}, 8, SELF, diversity=diversity)
    same(found, local.search(query, {name: 1.0}, 8, SELF, diversity=diversity))
    plain = edge.search(query, {name: 1.0}, 8, SELF)
    assert ids(found) != ids(plain) and ids(found)[0] == ids(plain)[0]  # diversity did something
    # The service's MMR over the same candidates picks what the engines' MMR picked.
    candidates = edge.search(query, {name: 1.0}, prefetch_size(8), SELF, with_vectors=True)
    same(diversify(candidates, [(name, query[name], 1.0)], diversity, 8, False), found)


@pytest.mark.parametrize("fusion", list(Fusion))
def test_both_engines_diversify_fused_queries_alike(
    both: tuple[ProductStore, ProductStore, list[ProductPoint]], fusion: Fusion
) -> None:
    edge, local, points = both
    query = points[4].vectors
    for weights in WEIGHTS:
        for diversity in (0.3, 0.7):
            found = edge.search(query, weights, 10, SELF, fusion, diversity=diversity)
            assert len(found) == 10 and "p-4" not in ids(found) and not found[0].vectors
            same(found, local.search(query, weights, 10, SELF, fusion, diversity=diversity))
        with_vectors = edge.search(query, weights, 10, SELF, fusion, with_vectors=True, diversity=0.5)
        assert all(h.vectors for h in with_vectors)


@pytest.mark.parametrize("fusion", list(Fusion))
def test_diversity_zero_gives_todays_results(
    both: tuple[ProductStore, ProductStore, list[ProductPoint]], fusion: Fusion
) -> None:
    for store in both[:2]:
        query = both[2][4].vectors
        for weights in (*WEIGHTS, {"text": 1.0}):
            same(
                store.search(query, weights, 10, SELF, fusion, diversity=0.0),
                store.search(query, weights, 10, SELF, fusion),
            )


# --- near-copies ---------------------------------------------------------------------------------------
def _near(base: dict[str, np.ndarray], noise: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for name, v in base.items():
        w = v + noise * unit(rng, len(v))
        out[name] = (w / np.linalg.norm(w)).astype(np.float32)
    return out


def _point(pid: str, shop: str, vectors: dict[str, np.ndarray]) -> ProductPoint:
    p = make_point(0, 1, np.random.default_rng(0)).product
    product = Product.model_validate(p.model_dump() | {"product_id": pid, "shop_id": shop, "updated_at": utc_now()})
    return ProductPoint(product, vectors)


@pytest.mark.parametrize("engine", ENGINES)
def test_one_shops_near_copies_give_way_to_other_shops(tmp_path_factory: pytest.TempPathFactory, engine: str) -> None:
    rng = np.random.default_rng(5)
    dims = {"image": 128, "text": 64}  # wide enough that random noise moves every cosine about alike
    query = {n: unit(rng, d) for n, d in dims.items()}
    points = [_point("q", "home", query)]
    # One shop lists a product much like the query a dozen times over (near-copies of each other); ten
    # other shops sell products a little less like it, each in its own way.
    copied = _near(query, 0.5, rng)
    points += [_point(f"copy-{i}", "copycat", _near(copied, 0.05, rng)) for i in range(SHOPS_COPYING)]
    points += [_point(f"other-{i}", f"shop-{i % 10}", _near(query, 0.7, rng)) for i in range(30)]
    points += [_point(f"far-{i}", "far", {n: unit(rng, d) for n, d in dims.items()}) for i in range(20)]
    with open_store(Settings(data_dir=tmp_path_factory.mktemp(engine), store_engine=engine)) as store:
        store.ensure_collection(dims)
        store.upsert(points)
        f = SearchFilter(exclude_product_ids=("q",))
        for weights in ({"image": 1.0}, {"image": 1.0, "text": 0.2}):
            plain = store.search(query, weights, 10, f)
            assert {h.product.shop_id for h in plain} == {"copycat"}  # the page is all near-copies
            shops = {
                d: len({h.product.shop_id for h in store.search(query, weights, 10, f, diversity=d)})
                for d in (0.3, 0.5)
            }
            assert shops[0.3] >= 5 and shops[0.5] >= 5  # of the 11 shops with a product like it
            top = store.search(query, weights, 10, f, diversity=0.5)
            assert top[0].product.product_id == plain[0].product.product_id and "far" not in {
                h.product.shop_id for h in top
            }
