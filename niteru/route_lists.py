"""The similar-products query of ``niteru.similar`` computed in numpy, for many queries and many routes at
once: what the routing fit scores its grid with.

The store would answer each (query, weights, fusion) with one search; the fit needs about 2,000 queries
times 44 routes (two vectors) or 264 (three), which through the store would take far longer than the
rebuild can spare. So the candidate lists are computed once per query, exactly (cosine with every product
of the collection: 13k x 1,280 floats is a few seconds of BLAS, where the store's HNSW index is
approximate), and each route's fusion is applied to them as the query plan (``niteru.store.plan``) asks
the engine to:

- one list per vector of positive weight (``similar`` does not search a zero-weight vector), each the
  ``prefetch_size(k)`` nearest products other than the query;
- ``wsum``: every candidate of the union rescored by each vector, weights normalised to sum to 1, plus
  the route's ``lexical`` weight times the candidate's BM25 for the query's title (``with_lexical``;
  ``niteru.lexical``): a bonus on the dense candidates, which brings no list of its own (with one dense
  list, that list re-ranked by cosine + bonus);
- ``wrrf``/``rrf``: ``sum 1 / ((rank + 1) / w + k_rrf - 1)`` over the lists a candidate is in (w = 1 for rrf);
- ``dbsf``: each list's scores scaled by its mean +- 3 sample standard deviations, summed.

Rank and distribution fusions ignore the ``lexical`` weight, as the store does.

``tests/test_route_fit.py`` checks that this ranks like the store for every rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from niteru.fusion import Fusion
from niteru.lexical import VECTOR as LEXICAL
from niteru.lexical import TitleScores
from niteru.store.plan import prefetch_size

# Queries per block of the exact search: a block's similarity matrix is CHUNK x products x 4 bytes per vector.
CHUNK = 256


@dataclass(frozen=True)
class CandidateLists:
    """For each query: each vector's list of the ``size`` nearest other products, best first,
    concatenated in ``names`` order (``ids``, shape queries x names*size), and every vector's cosine with
    each of those products (``cos[name]``, same shape), and when asked (``with_lexical``) the BM25 of the
    query's title for each (``lexical``, same shape)."""

    names: tuple[str, ...]
    size: int
    ids: np.ndarray
    cos: Mapping[str, np.ndarray]
    lexical: np.ndarray | None = None

    def columns(self, name: str) -> slice:
        i = self.names.index(name)
        return slice(i * self.size, (i + 1) * self.size)


def candidate_lists(
    vectors: Mapping[str, np.ndarray], queries: np.ndarray, k: int, names: Sequence[str]
) -> CandidateLists:
    """The lists of the queries (row indices into ``vectors``), each query left out of its own lists."""
    return _lists(vectors, {n: vectors[n][queries] for n in names}, queries, k, names)


def candidate_lists_of(
    vectors: Mapping[str, np.ndarray], query_vectors: Mapping[str, np.ndarray], k: int, names: Sequence[str]
) -> CandidateLists:
    """The lists of products that are not in the collection (``query_vectors``: name -> (queries, dim)),
    nothing left out: a re-listed variant's lists, where its original should come first."""
    return _lists(vectors, query_vectors, None, k, names)


def with_lexical(lists: CandidateLists, scores: TitleScores, titles: Sequence[str]) -> CandidateLists:
    """``lists`` with each candidate's BM25 for its query's title (``titles``: one per query, in order:
    a stored product's own title, or a variant's re-written one)."""
    return replace(lists, lexical=np.asarray(scores.scores(titles, lists.ids), np.float64))


def _lists(
    vectors: Mapping[str, np.ndarray],
    query_vectors: Mapping[str, np.ndarray],
    leave_out: np.ndarray | None,
    k: int,
    names: Sequence[str],
) -> CandidateLists:
    n = len(next(iter(vectors.values())))
    q = len(next(iter(query_vectors.values())))
    size = min(prefetch_size(k), n - 1)
    ids = np.empty((q, len(names) * size), np.int64)
    cos = {name: np.empty((q, len(names) * size), np.float32) for name in names}
    for start in range(0, q, CHUNK):
        stop = min(q, start + CHUNK)
        rows = np.arange(stop - start)
        sims = {}
        for name in names:
            s = query_vectors[name][start:stop] @ vectors[name].T
            if leave_out is not None:
                s[rows, leave_out[start:stop]] = -np.inf  # the query is never its own neighbour
            sims[name] = s
        for i, name in enumerate(names):
            s = sims[name]
            top = np.argpartition(-s, size - 1, axis=1)[:, :size]
            order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
            ids[start:stop, i * size : (i + 1) * size] = np.take_along_axis(top, order, axis=1)
        found = ids[start:stop]
        for name in names:
            cos[name][start:stop] = np.take_along_axis(sims[name], found, axis=1)
    return CandidateLists(tuple(names), size, ids, cos)


def fused_hits(lists: CandidateLists, weights: Mapping[str, float], fusion: Fusion, k: int, rrf_k: int) -> np.ndarray:
    """The ``k`` results of each query under the route (``-1`` pads a query with fewer candidates)."""
    return fused(lists, weights, fusion, k, rrf_k)[0]


def fused(
    lists: CandidateLists, weights: Mapping[str, float], fusion: Fusion, k: int, rrf_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` results of each query under the route and their fused scores (``-1`` and ``-inf`` pad a
    query with fewer candidates)."""
    active = [n for n in lists.names if weights.get(n, 0.0) > 0]
    if not active:
        raise ValueError(f"no positive weight in {dict(weights)}")
    bonus = float(weights.get(LEXICAL, 0.0)) if fusion is Fusion.wsum else 0.0
    if bonus > 0 and lists.lexical is None:
        raise ValueError(f"a lexical weight ({bonus}) but no lexical scores in the lists")
    if len(active) == 1 and bonus <= 0:  # one list: plain cosine, whatever the fusion
        one = lists.columns(active[0])
        return _pad(lists.ids[:, one][:, :k], k, -1), _pad(lists.cos[active[0]][:, one][:, :k], k, -np.inf)
    cols = np.concatenate([np.arange(*lists.columns(n).indices(lists.ids.shape[1])) for n in active])
    ids = lists.ids[:, cols]
    if fusion is Fusion.wsum:
        total = sum(weights[n] for n in active)
        values = sum(weights[n] / total * lists.cos[n][:, cols] for n in active)
        if bonus > 0:
            assert lists.lexical is not None
            values = values + bonus * lists.lexical[:, cols]
        summed = False
    else:
        values = np.concatenate([_list_values(lists, n, weights[n], fusion, rrf_k) for n in active], axis=1)
        summed = True
    return _top(ids, np.asarray(values, np.float64), summed, k)


def _list_values(lists: CandidateLists, name: str, weight: float, fusion: Fusion, rrf_k: int) -> np.ndarray:
    """Each entry's term of its list under a rank or distribution fusion."""
    scores = lists.cos[name][:, lists.columns(name)].astype(np.float64)
    if fusion is Fusion.dbsf:
        mean = scores.mean(axis=1, keepdims=True)
        sd = scores.std(axis=1, ddof=1, keepdims=True) if scores.shape[1] > 1 else np.zeros_like(mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = (scores - (mean - 3 * sd)) / (6 * sd)
        return np.where(sd > 0, scaled, 0.5)
    w = weight if fusion is Fusion.wrrf else 1.0
    ranks = np.arange(scores.shape[1], dtype=np.float64)
    return np.broadcast_to(1.0 / ((ranks + 1) / w + rrf_k - 1), scores.shape)


def _top(ids: np.ndarray, values: np.ndarray, summed: bool, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge a product's entries of several lists (sum its terms, or take its one rescored value) and
    keep the ``k`` best per query."""
    order = np.argsort(ids, axis=1, kind="stable")
    ids_s = np.take_along_axis(ids, order, axis=1)
    vals_s = np.take_along_axis(values, order, axis=1)
    first = np.ones(ids_s.shape, bool)
    first[:, 1:] = ids_s[:, 1:] != ids_s[:, :-1]
    if summed:
        group = np.cumsum(first.ravel()) - 1
        totals = np.bincount(group, weights=vals_s.ravel())
        vals_s = totals[group].reshape(ids_s.shape)
    fused = np.where(first, vals_s, -np.inf)
    best = np.argsort(-fused, axis=1, kind="stable")[:, :k]
    hits, scores = np.take_along_axis(ids_s, best, axis=1), np.take_along_axis(fused, best, axis=1)
    return _pad(np.where(np.isfinite(scores), hits, -1), k, -1), _pad(scores, k, -np.inf)


def _pad(a: np.ndarray, k: int, fill: float) -> np.ndarray:
    if a.shape[1] >= k:
        return a
    return np.concatenate([a, np.full((a.shape[0], k - a.shape[1]), fill, a.dtype)], axis=1)
