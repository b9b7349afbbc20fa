"""The lexical (BM25 title) term of the routing fit (niteru/route_lists.py, route_grid.py, route_fit.py): the
wsum fusion's bonus computed the long way (cosines from the vectors, BM25 from a real Edge shard), its
absence from the rank fusions, the grid's lexical axis, and a fit that takes the bonus when titles tell
the subcategories apart; and the emulation against both store engines' fused query with the bonus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from niteru.fusion import Fusion
from niteru.lexical import AVG_TITLE_TOKENS, VECTOR, Bm25Index, TitleScores
from niteru.route_fit import fit_table
from niteru.route_grid import Choice, FitData, Variants, grid, routes
from niteru.route_lists import CandidateLists, candidate_lists, fused, with_lexical
from niteru.settings import Settings
from niteru.store import SearchFilter, open_store
from tests.test_store import make_point

K, RRF_K = 10, 60
WORDS = ["alpha", "bravo", "charlie", "delta"]  # one per subcategory
FILLER = ["cotton", "shirt", "bottle", "lamp", "steel", "green", "red", "summer", "classic", "soft", "mini", "pack"]


def unit(m: np.ndarray) -> np.ndarray:
    return np.asarray(m / np.linalg.norm(m, axis=1, keepdims=True), np.float32)


def titles_of(rng: np.random.Generator, sub: np.ndarray) -> list[str]:
    """The subcategory's word and two or three filler words."""
    out = []
    for s in sub:
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 4)), replace=False))
        out.append(" ".join([WORDS[s], *words]))
    return out


def collection(n: int = 240, seed: int = 1) -> FitData:
    """Four subcategories over two categories; image vectors lean a little on the subcategory, text is noise."""
    rng = np.random.default_rng(seed)
    sub = np.arange(n) % 4
    centres = rng.normal(size=(4, 24))
    image = unit(centres[sub] * 0.35 + rng.normal(size=(n, 24)))
    text = unit(rng.normal(size=(n, 16)))
    return FitData(
        [f"p{i:03d}" for i in range(n)],
        ["one" if s < 2 else "two" for s in sub],
        sub.astype(np.int64),
        np.ones(n, bool),
        {"image": image, "text": text},
        titles=titles_of(rng, sub),
    )


@pytest.fixture(scope="module")
def data() -> FitData:
    return collection()


@pytest.fixture(scope="module")
def lists(data: FitData) -> tuple[np.ndarray, CandidateLists]:
    assert data.titles is not None
    queries = np.arange(0, len(data.product_ids), 9)
    plain = candidate_lists(data.vectors, queries, K, ("image", "text"))
    return queries, with_lexical(plain, TitleScores(data.titles), [data.titles[q] for q in queries])


@pytest.mark.parametrize("weights", [{"image": 0.3, "text": 0.7}, {"image": 1.0}, {"image": 0.5, "text": 0.2}])
@pytest.mark.parametrize("bonus", [0.0, 0.01, 0.3])
def test_wsum_adds_the_weighted_bm25_of_the_titles_to_the_normalised_cosines(
    data: FitData, lists: tuple[np.ndarray, CandidateLists], weights: dict[str, float], bonus: float
) -> None:
    queries, found = lists
    assert data.titles is not None
    hits, scores = fused(found, weights | {VECTOR: bonus}, Fusion.wsum, K, RRF_K)
    total = sum(weights.values())
    with Bm25Index(data.titles, avg_len=AVG_TITLE_TOKENS) as engine:
        for q, row, row_scores in zip(queries, hits, scores, strict=True):
            bm25 = dict(engine.search(data.titles[q], len(data.titles)))
            # the candidates: the union of the dense lists of positive weight (the bonus brings none)
            union = {int(i) for n in weights for i in found.ids[np.flatnonzero(queries == q)[0], found.columns(n)]}
            expected = {
                i: sum(w / total * float(data.vectors[n][q] @ data.vectors[n][i]) for n, w in weights.items())
                + bonus * bm25.get(i, 0.0)
                for i in union
            }
            best = sorted(expected.values(), reverse=True)[:K]
            assert row_scores.tolist() == pytest.approx(best, abs=1e-5)
            assert all(expected[int(i)] == pytest.approx(s, abs=1e-5) for i, s in zip(row, row_scores, strict=True))


@pytest.mark.parametrize("fusion", [Fusion.wrrf, Fusion.rrf, Fusion.dbsf])
def test_rank_and_distribution_fusions_ignore_the_lexical_weight(
    lists: tuple[np.ndarray, CandidateLists], fusion: Fusion
) -> None:
    _, found = lists
    weights = {"image": 0.4, "text": 0.6}
    with_bonus = fused(found, weights | {VECTOR: 0.5}, fusion, K, RRF_K)
    without = fused(found, weights, fusion, K, RRF_K)
    assert np.array_equal(with_bonus[0], without[0]) and np.array_equal(with_bonus[1], without[1])


def test_a_bonus_without_lexical_scores_is_an_error(data: FitData) -> None:
    plain = candidate_lists(data.vectors, np.arange(3), K, ("image", "text"))
    with pytest.raises(ValueError, match="lexical"):
        fused(plain, {"image": 0.5, "text": 0.5, VECTOR: 0.01}, Fusion.wsum, K, RRF_K)


def test_the_grid_has_a_lexical_axis_for_wsum_only() -> None:
    choices = routes(2, 0.5, (0.02, 0.01, 0.0))
    dense = grid(2, 0.5)
    assert len(choices) == len(dense) * (3 + len(Fusion) - 1)
    assert {c.lexical for c in choices if c.fusion is Fusion.wsum} == {0.0, 0.01, 0.02}
    assert {c.lexical for c in choices if c.fusion is not Fusion.wsum} == {0.0}
    assert routes(2, 0.5) == [c for c in choices if c.lexical == 0.0]  # 0 is always on the axis
    # a row carries the key only when it weighs the bonus
    assert Choice(Fusion.wsum, (0.5, 0.5), 0.01).route(("image", "text")) == {"image": 0.5, "text": 0.5, VECTOR: 0.01}
    assert Choice(Fusion.wsum, (0.5, 0.5)).route(("image", "text")) == {"image": 0.5, "text": 0.5}
    # among equals the fit keeps the nearest to its anchor: a bonus counts after the dense weights
    anchor = Choice(Fusion.wsum, (0.5, 0.5))
    assert Choice(Fusion.wsum, (0.5, 0.5), 0.02).distance(anchor) < Choice(Fusion.wsum, (0.6, 0.4)).distance(anchor)


def titled_variants(data: FitData) -> Variants:
    """Every fourth product re-listed as itself (same vectors and title): the look-alike check has variants."""
    assert data.titles is not None
    originals = np.arange(0, len(data.product_ids), 4)
    return Variants(originals, {n: v[originals] for n, v in data.vectors.items()}, [data.titles[i] for i in originals])


def test_the_fit_takes_the_bonus_when_titles_name_the_subcategory() -> None:
    settings = Settings(route_fit_validation_share=0.5, route_fit_min_queries=5)
    data = collection()
    table = fit_table(data, settings, "c", titled_variants(data))
    assert table.info["lexical_weights"] == sorted({0.0, *settings.route_fit_lexical_weights})
    assert table.global_row.weights.get(VECTOR, 0.0) > 0
    assert table.global_row.fusion is Fusion.wsum
    assert table.global_row.score is not None and table.global_row.score > max(table.global_row.single.values())
    # without the setting the axis is gone and no row carries the key
    off = fit_table(data, Settings(**{**settings.model_dump(), "lexical": False}), "c", titled_variants(data))
    assert off.info["lexical_weights"] == []
    assert all(VECTOR not in r.weights for r in (off.global_row, *off.rows.values()))
    # without variants (an ingest's fit: precision alone, no look-alike check) neither: titles naming the
    # subcategory would win it by the label
    bare = fit_table(data, settings, "c")
    assert bare.info["lexical_weights"] == []
    assert all(VECTOR not in r.weights for r in (bare.global_row, *bare.rows.values()))


def test_variants_without_titles_leave_the_lexical_axis_out() -> None:
    data = collection()
    settings = Settings(route_fit_validation_share=0.5, route_fit_min_queries=5)
    originals = np.arange(0, len(data.product_ids), 4)
    vectors = {n: v[originals] for n, v in data.vectors.items()}
    untitled = fit_table(data, settings, "c", Variants(originals, vectors))
    assert untitled.info["lexical_weights"] == [] and untitled.info["variants"] == len(originals)
    assert data.titles is not None
    titled = fit_table(data, settings, "c", Variants(originals, vectors, [data.titles[i] for i in originals]))
    assert titled.info["lexical_weights"] and titled.info["variants"] == len(originals)


@pytest.mark.parametrize("engine", ["edge", "qdrant"])
def test_the_numpy_query_with_a_bonus_ranks_like_the_store(tmp_path: Path, engine: str) -> None:
    """The fit's emulation against the store's fused query with the title's BM25 (issue #17's serving side):
    two dense lists and a bonus, one dense list and a bonus, a rank fusion that ignores it."""
    rng = np.random.default_rng(8)
    sub = np.arange(120) % 4
    titles = titles_of(rng, sub)
    titles[7] = "the of and"  # no token survives: no lexical vector, out of the IDF's N
    points = [make_point(i, 1, rng, title=t) for i, t in enumerate(titles)]
    settings = Settings(data_dir=tmp_path, store_engine=engine, quantization_image="none")
    with open_store(settings) as store:
        store.ensure_collection({n: len(v) for n, v in points[0].vectors.items()})
        store.upsert(points)
        stored = [p for batch in store.scroll(batch_size=512, with_vectors=True) for p in batch]
        data = FitData.of(stored)
        assert data.titles is not None
        queries = np.arange(0, len(stored), 11)
        plain = candidate_lists(data.vectors, queries, K, ("image", "text"))
        lists = with_lexical(plain, TitleScores(data.titles), [data.titles[q] for q in queries])
        for fusion, weights in (
            (Fusion.wsum, {"image": 0.3, "text": 0.7, VECTOR: 0.02}),
            (Fusion.wsum, {"image": 1.0, VECTOR: 0.05}),
            (Fusion.wrrf, {"image": 0.5, "text": 0.5, VECTOR: 0.05}),
        ):
            hits, scores = fused(lists, weights, fusion, K, RRF_K)
            for q, row, row_scores in zip(queries, hits, scores, strict=True):
                point = stored[q]
                asked = {n: v for n, v in point.vectors.items() if weights.get(n, 0.0) > 0}
                only = SearchFilter(exclude_product_ids=(point.product.product_id,))
                found = store.search(asked, weights, K, only, fusion, title=point.product.title)
                assert [h.score for h in found] == pytest.approx(row_scores.tolist(), abs=1e-5), (fusion, weights, q)
                ours = {data.product_ids[i]: s for i, s in zip(row, row_scores, strict=True)}
                for h in found:  # the same products, but for the order of equal scores
                    assert h.product.product_id in ours or any(abs(s - h.score) < 1e-5 for s in ours.values())
