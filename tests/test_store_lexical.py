"""The lexical term of a fused search (``niteru.lexical``, ``plan.lexical_term``): each title's BM25 vector
stored by the store itself, and a route's ``lexical`` weight adding weight x BM25 to the wsum of the
dense candidates. Both engines answer alike, Edge's plain-query fusion answers as its own fused query,
and the term does what it is for: among products that look alike, the one whose title shares the query's
rare words comes first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from niteru.fusion import Fusion
from niteru.routing import Mode
from niteru.settings import Settings
from niteru.similar import QueryProduct, SimilarOptions, similar_to_vectors
from niteru.store import ProductPoint, ProductStore, SearchFilter, open_store
from niteru.store.edge import EdgeProductStore
from tests.store_fixtures import in_both_engines
from tests.test_store import DIMS, ENGINES, make_point, unit
from tests.test_store_local_fusion import assert_same_up_to_ties

WORDS = ("nike", "adidas", "red", "blue", "black", "shirt", "shoe", "cap", "sock", "jacket", "cotton", "wool")
LEX = {"image": 0.6, "text": 0.4, "lexical": 0.02}


def titles(n: int, rng: np.random.Generator) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 5)), replace=False)) for _ in range(n)]


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProductStore, ProductStore, list[ProductPoint]]]:
    """The same 80 products with word titles (a few of stopwords or numbers only) in both engines."""
    rng = np.random.default_rng(21)
    names = titles(80, rng)
    names[5], names[6] = "the of and", "2024 123"  # no token survives: stored without a lexical vector
    with in_both_engines([make_point(i, 100, rng, title=t) for i, t in enumerate(names)], tmp_path_factory) as s:
        yield s


def ids(hits: list) -> list[str]:  # type: ignore[type-arg]
    return [h.product.product_id for h in hits]


@pytest.mark.parametrize("weights", [LEX, {"text": 1.0, "lexical": 0.02}], ids=["routed", "search by text"])
@pytest.mark.parametrize("where", [None, SearchFilter(category="food", exclude_product_ids=("p-4",))])
def test_both_engines_and_both_edge_ways_add_the_same_lexical_term(
    both: tuple[ProductStore, ProductStore, list[ProductPoint]], where: SearchFilter | None, weights: dict[str, float]
) -> None:
    """A route's dense vectors, or one vector as search by text asks (``api.services.search_text``)."""
    edge, local, points = both
    assert isinstance(edge, EdgeProductStore)
    for q in (4, 5, 17, 30):
        query = {n: v for n, v in points[q].vectors.items() if n in weights}
        title = points[q].product.title
        # Short lists (8 for 10 results) make the engines fuse overlapping candidates; one vector's list must
        # hold the 10 itself (the default: a few times k), as the lexical term brings no candidates.
        candidates = 8 if len(query) > 1 else None
        plain = edge.search(query, weights, 10, where, candidates=candidates)
        with_words = edge.search(query, weights, 10, where, candidates=candidates, title=title)
        assert with_words and len(with_words) == len(plain)
        if q != 5:  # a title of stopwords adds nothing
            assert [h.score for h in with_words] != pytest.approx([h.score for h in plain], abs=1e-6)
        theirs = local.search(query, weights, 10, where, candidates=candidates, title=title)
        assert_same_up_to_ties(with_words, theirs)
        edge.fuse_locally = False
        try:
            engine_fused = edge.search(query, weights, 10, where, candidates=candidates, title=title)
        finally:
            edge.fuse_locally = True
        assert_same_up_to_ties(with_words, engine_fused)


def test_a_shared_rare_word_lifts_a_look_alike_by_weight_times_bm25(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    base = {"image": unit(rng, DIMS["image"]), "text": unit(rng, DIMS["text"])}
    # Four products with the same vectors: only their titles tell them apart.
    named = ["zebra print jacket", "plain wool jacket", "plain cotton jacket", "zebra striped sock"]
    points = [make_point(i, 1, rng, title=t) for i, t in enumerate(named)]
    for p in points:
        p.vectors = dict(base)
    others = [make_point(i, 1, rng) for i in range(10, 40)]
    with open_store(Settings(data_dir=tmp_path)) as store:
        store.ensure_collection(DIMS)
        store.upsert([*points, *others])
        dense = store.search(base, {"image": 0.5, "text": 0.5}, 4)
        assert len({round(h.score, 5) for h in dense}) == 1  # a four-way tie without the words
        found = store.search(base, {"image": 0.5, "text": 0.5, "lexical": 0.05}, 4, title="zebra jacket")
        # "zebra" is rarer than "jacket": both words first, then zebra alone, then jacket alone.
        assert ids(found)[0] == "p-0"
        assert ids(found)[1] == "p-3"
        assert {h.product.product_id for h in found[2:]} == {"p-1", "p-2"}
        bonus = [h.score - dense[0].score for h in found]
        assert bonus[0] > bonus[1] > bonus[2] > 0
        # The same weight under a rank fusion, or with no title, changes nothing.
        for fusion, title in ((Fusion.rrf, "zebra jacket"), (Fusion.wsum, None), (Fusion.wsum, "")):
            weights = {"image": 0.5, "text": 0.5, "lexical": 0.05}
            a = store.search(base, weights, 4, fusion=fusion, title=title)
            b = store.search(base, {"image": 0.5, "text": 0.5}, 4, fusion=fusion)
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-6)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_sparse_vector_never_crosses_the_interface_and_the_setting_turns_it_off(
    tmp_path: Path, engine: str
) -> None:
    rng = np.random.default_rng(8)
    points = [make_point(i, 1, rng, title=f"blue shirt {w}") for i, w in enumerate(WORDS)]
    for lexical in (True, False):
        settings = Settings(data_dir=tmp_path / str(lexical), store_engine=engine, lexical=lexical)
        with open_store(settings) as store:
            store.ensure_collection(DIMS)
            store.upsert(points)
            assert store._has_lexical(store.collection) is lexical
            got = store.get("p-3", with_vectors=True)
            assert got is not None and set(got.vectors) == {"image", "text"}
            assert {n for b in store.scroll(with_vectors=True) for p in b for n in p.vectors} == {"image", "text"}
            query = points[0].vectors
            lifted = store.search(query, {**LEX, "lexical": 1.0}, 5, title="cotton")  # words over looks
            dense = store.search(query, {"image": 0.6, "text": 0.4}, 5)
            if lexical:  # "cotton" is in one title: that product comes first
                assert ids(lifted)[0] == "p-10" and ids(dense)[0] != "p-10"
            else:  # a collection without the vector ignores the weight
                assert ids(lifted) == ids(dense)


def test_explain_reports_the_lexical_share_of_the_fused_score(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    points = [make_point(i, 1, rng, title=t) for i, t in enumerate(titles(40, rng))]
    with open_store(Settings(data_dir=tmp_path)) as store:
        store.ensure_collection(DIMS)
        store.upsert(points)
        settings = Settings(data_dir=tmp_path, route_weights={"*": LEX})
        q = points[7]
        query = QueryProduct(q.vectors, q.product.category, title=q.product.title)
        result = similar_to_vectors(store, query, settings, SimilarOptions(k=8, mode=Mode.auto, explain=True))
        assert result.route.weights == LEX
        shared = set(q.product.title.split())
        for hit, why in zip(result.hits, result.explanations, strict=True):
            assert sum(why.contributions.values()) == pytest.approx(hit.score, abs=1e-5)
            assert why.contributions["lexical"] == pytest.approx(0.02 * why.scores["lexical"], abs=1e-9)
            # a BM25 score is positive exactly when the titles share a word
            assert (why.scores["lexical"] > 0) == bool(shared & set(hit.product.title.split()))
