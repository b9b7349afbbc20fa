"""Fusion rules of hybrid queries (a leaf module: settings and the store both name them)."""

from __future__ import annotations

from enum import StrEnum


class Fusion(StrEnum):
    """How the per-vector candidate lists of a hybrid query become one ranking (Qdrant's Query API).

    - ``wsum``: weighted sum of the cosine similarities, weights normalised to sum to 1. Every candidate
      of either list is rescored by both vectors first, so each has both scores.
    - ``wrrf``: weighted reciprocal rank fusion, ``sum_n 1 / ((rank_n + 1) / w_n + k - 1)`` (Qdrant's rule).
    - ``rrf``: plain RRF (weights ignored except that a zero weight drops the list).
    - ``dbsf``: distribution-based score fusion (each list's scores scaled by its mean +- 3 sd, summed;
      unweighted, a zero weight drops the list).
    """

    wsum = "wsum"
    wrrf = "wrrf"
    rrf = "rrf"
    dbsf = "dbsf"
