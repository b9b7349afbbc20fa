"""Edge's fused searches run as plain queries fused in the service (``niteru.store.local_fusion``) answer
as Edge's own fused query does, on the same store: every fusion rule, with filters and excluded ids,
short candidate lists (so the rescoring has scores to fetch) and long ones, with and without vectors.

Scores must agree to float32 rounding and the rankings must be identical up to ties (equal fused
scores, which RRF makes often: their order is arbitrary in the engine).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from niteru.fusion import Rrf
from niteru.settings import Settings
from niteru.store import Fusion, Hit, ProductPoint, SearchFilter, local_fusion, open_store
from niteru.store.edge import EdgeProductStore
from niteru.store.local_fusion import dbsf_fuse, rrf_fuse
from tests.test_store import DIMS, make_point

FILTERS = {
    "none": None,
    "self": SearchFilter(exclude_product_ids=("p-4",)),
    "category": SearchFilter(category="food", exclude_product_ids=("p-4", "p-7")),
    "shop": SearchFilter(exclude_shop_id="shop-1", exclude_product_ids=("p-4",)),
    "nothing passes": SearchFilter(category="no such category"),
}
WEIGHTS = ({"image": 1.0, "text": 0.2}, {"image": 0.5, "text": 0.5}, {"image": 0.0, "text": 1.0})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EdgeProductStore, list[ProductPoint]]]:
    rng = np.random.default_rng(5)
    points = [make_point(i, 100, rng) for i in range(400)]
    s = open_store(Settings(data_dir=tmp_path_factory.mktemp("edge"), store_engine="edge"))
    assert isinstance(s, EdgeProductStore)
    s.ensure_collection(DIMS)
    s.upsert(points)
    yield s, points
    s.close()


def both_ways(s: EdgeProductStore, *args: Any, **kwargs: Any) -> tuple[list[Hit], list[Hit]]:
    s.fuse_locally = False
    try:
        engine = s.search(*args, **kwargs)
    finally:
        s.fuse_locally = True
    return s.search(*args, **kwargs), engine


def assert_same_up_to_ties(local: list[Hit], engine: list[Hit]) -> None:
    assert len(local) == len(engine)
    assert [h.score for h in local] == pytest.approx([h.score for h in engine], abs=1e-5)
    # Group by score (to float32 rounding): within a group the order is the engine's choice.
    i = 0
    while i < len(engine):
        j = i
        while j < len(engine) and abs(engine[j].score - engine[i].score) <= 1e-5:
            j += 1
        tied_engine = {h.product.product_id for h in engine[i:j]}
        tied_local = {h.product.product_id for h in local[i:j]}
        # The last group may be cut by the limit: the two may keep different members of a tie there.
        if j < len(engine):
            assert tied_local == tied_engine, f"ranks {i}-{j - 1} differ"
        i = j
    by_id = {h.product.product_id: h for h in engine}
    for h in local:
        if h.product.product_id in by_id:
            assert h.product == by_id[h.product.product_id].product


@pytest.mark.parametrize("fusion", list(Fusion))
@pytest.mark.parametrize("where", list(FILTERS))
@pytest.mark.parametrize("candidates", [None, 6])
def test_local_fusion_answers_as_the_engine(
    store: tuple[EdgeProductStore, list[ProductPoint]], fusion: Fusion, where: str, candidates: int | None
) -> None:
    s, points = store
    for q in (4, 11):
        for weights in WEIGHTS:
            local, engine = both_ways(s, points[q].vectors, weights, 10, FILTERS[where], fusion, candidates=candidates)
            if where != "nothing passes":
                assert len(engine) == 10, "a query that finds little compares little"
            assert_same_up_to_ties(local, engine)


def test_local_fusion_returns_the_vectors_and_excludes_ids(store: tuple[EdgeProductStore, list[ProductPoint]]) -> None:
    s, points = store
    f = SearchFilter(exclude_product_ids=("p-4", "p-9"))
    local, engine = both_ways(s, points[4].vectors, {"image": 0.7, "text": 0.3}, 12, f, Fusion.wsum, with_vectors=True)
    assert_same_up_to_ties(local, engine)
    assert not {"p-4", "p-9"} & {h.product.product_id for h in local}
    stored = {p.product.product_id: p.vectors for p in points}
    for h in local:
        assert h.vectors.keys() == {"image", "text"}
        np.testing.assert_allclose(h.vectors["image"], stored[h.product.product_id]["image"], atol=1e-6)
        # wsum: the fused score is the weighted sum of the cosines, from the vectors the hit carries
        cos = {n: float(np.dot(h.vectors[n], points[4].vectors[n])) for n in ("image", "text")}
        assert h.score == pytest.approx(0.7 * cos["image"] + 0.3 * cos["text"], abs=1e-5)


def test_single_vector_searches_and_candidate_lists_are_the_engines(
    store: tuple[EdgeProductStore, list[ProductPoint]],
) -> None:
    s, points = store
    image = {"image": points[3].vectors["image"]}
    local, engine = both_ways(s, image, {"image": 1.0}, 8, FILTERS["category"])
    assert [h.product.product_id for h in local] == [h.product.product_id for h in engine]
    # wsum with a zero weight still fuses (the text list brings candidates) and adds nothing to the scores
    local, engine = both_ways(s, points[3].vectors, {"image": 1.0, "text": 0.0}, 8, None, Fusion.wsum, candidates=5)
    assert_same_up_to_ties(local, engine)
    hits = s.search(points[3].vectors, {"image": 1.0, "text": 0.0}, 8, candidates=5, with_vectors=True)
    cosines = [float(np.dot(h.vectors["image"], image["image"])) for h in hits]
    assert [h.score for h in hits] == pytest.approx(cosines, abs=1e-5)
    lists = s.candidate_lists(points[3].vectors, 5, FILTERS["category"])
    assert [len(v) for v in lists.values()] == [50, 50]


def test_rrf_and_dbsf_follow_qdrants_rules() -> None:
    lists = [[("a", 0.9), ("b", 0.8), ("c", 0.1)], [("b", 0.5), ("d", 0.4)]]
    assert rrf_fuse(lists, Rrf(60)) == pytest.approx({"a": 1 / 60, "b": 1 / 61 + 1 / 60, "c": 1 / 62, "d": 1 / 61})
    weighted = rrf_fuse(lists, Rrf(60, (2.0, 0.5)))
    assert weighted["a"] == pytest.approx(1 / (1 / 2.0 + 59)) and weighted["d"] == pytest.approx(1 / (2 / 0.5 + 59))
    s = np.array([0.9, 0.8, 0.1])
    low, high = s.mean() - 3 * s.std(ddof=1), s.mean() + 3 * s.std(ddof=1)
    fused = dbsf_fuse([*lists[:1], [("z", 0.3)]])
    assert fused["a"] == pytest.approx((0.9 - low) / (high - low), abs=1e-6)
    assert fused["z"] == 0.5  # a list of one
    assert dbsf_fuse([[("x", 0.4), ("y", 0.4)]]) == {"x": 0.5, "y": 0.5}  # no spread


def test_many_missing_scores_are_asked_for_exactly(
    store: tuple[EdgeProductStore, list[ProductPoint]], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, points = store
    monkeypatch.setattr(local_fusion, "RESCORE_EXACT_ABOVE", 0)  # every rescoring takes the exact path
    for where in ("none", "category"):
        local, engine = both_ways(s, points[8].vectors, {"image": 0.6, "text": 0.4}, 10, FILTERS[where], candidates=6)
        assert_same_up_to_ties(local, engine)


def test_the_setting_chooses_the_way(tmp_path: Path) -> None:
    for fuse_locally in (True, False):
        settings = Settings(data_dir=tmp_path / str(fuse_locally), edge_fuse_locally=fuse_locally)
        with open_store(settings) as s:
            assert isinstance(s, EdgeProductStore) and s.fuse_locally is fuse_locally
