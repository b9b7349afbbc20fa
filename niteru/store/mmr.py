"""Maximal marginal relevance in the service, for fused queries (engines run MMR on one vector only).

Qdrant's MMR (``qdrant_edge.Mmr``, the server's ``NearestQuery.mmr``) scores candidates against one
named vector; a fused query has a formula or a rank fusion instead, over which neither engine can
diversify. So the engine runs the fused query for the MMR candidates, with their vectors, and this
module picks among them with Qdrant's greedy rule: first the most relevant, then each time the candidate
maximising ``(1 - diversity) * relevance - diversity * max(similarity to those picked)``.

Relevance and similarity are the route's weighted mean of the per-vector cosines (the ``wsum`` score),
whatever the fusion: MMR trades relevance against similarity, so both must be on one scale (a rank
fusion's score of 0.03 against a cosine of 0.8 would make any diversity total). The fusion still
chooses the candidates, and each hit keeps the score the engine gave it. On one vector this is exactly
Qdrant's rule, which the tests check against both engines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from niteru.store.records import Hit


def _unit_rows(hits: Sequence[Hit], name: str, dim: int) -> np.ndarray:
    """Each hit's vector ``name`` scaled to length 1 (zeros where a hit lacks it: it adds nothing)."""
    rows = np.zeros((len(hits), dim), np.float32)
    for i, h in enumerate(hits):
        v = h.vectors.get(name)
        if v is not None:
            rows[i] = v
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


# (vector name, the query's vector, its route weight)
QueryVector = tuple[str, Sequence[float] | np.ndarray, float]


def weighted_rows(hits: Sequence[Hit], query: Sequence[QueryVector]) -> tuple[np.ndarray, np.ndarray]:
    """The hits' vectors and the query's, each as one row: its unit vectors side by side, each scaled by
    the square root of its share of the weights, so that a dot product of two rows is the weighted mean
    of their cosines. Returns (hit rows, query row)."""
    total = sum(max(0.0, w) for _, _, w in query) or 1.0
    rows, query_row = [], []
    for name, vector, weight in query:
        if weight <= 0:
            continue
        scale = np.float32(np.sqrt(weight / total))
        q = np.asarray(vector, np.float32)
        rows.append(scale * _unit_rows(hits, name, len(q)))
        query_row.append(scale * q / (np.linalg.norm(q) or 1.0))
    return np.concatenate(rows, axis=1), np.concatenate(query_row)


def mmr_order(relevance: np.ndarray, similar_to: Callable[[int], np.ndarray], diversity: float, k: int) -> list[int]:
    """Qdrant's greedy MMR: the indices of ``k`` candidates in the order picked (ties: the first).
    ``similar_to(i)``: every candidate's similarity to candidate i (asked only of those picked)."""
    n = len(relevance)
    if n == 0:
        return []
    picked = [int(np.argmax(relevance))]
    # The highest similarity of each candidate to any picked one, updated as candidates are picked.
    closest = similar_to(picked[0])
    left = np.ones(n, bool)
    left[picked[0]] = False
    while len(picked) < min(k, n):
        score = np.where(left, (1.0 - diversity) * relevance - diversity * closest, -np.inf)
        best = int(np.argmax(score))
        picked.append(best)
        left[best] = False
        closest = np.maximum(closest, similar_to(best))
    return picked


def diversify(
    hits: Sequence[Hit],
    query: Sequence[QueryVector],
    diversity: float,
    k: int,
    keep_vectors: bool,
) -> list[Hit]:
    """``k`` of ``hits`` (which carry their vectors) in MMR order; their vectors dropped unless kept."""
    if not hits:
        return []
    rows, query_row = weighted_rows(hits, query)
    # One matrix product rather than a product per pick: at most MMR_MAX_CANDIDATES squared (4 MB).
    similarity = rows @ rows.T
    chosen = [hits[i] for i in mmr_order(rows @ query_row, similarity.__getitem__, diversity, k)]
    return chosen if keep_vectors else [replace(h, vectors={}) for h in chosen]
