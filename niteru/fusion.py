"""Fusion rules of hybrid queries: each rule's query (what the engine computes) and its explanation.

A leaf module (settings, the query plan and the explain code all name the rules). Adding a fusion means
one ``FusionRule`` here: ``combine`` says what the engines compute, ``contribution`` what ``explain``
reports of it; the plan and both engines follow from the ``RULES`` registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np


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


# --- what an engine computes: one of these over the prefetched lists, in list order ---------------------
@dataclass(frozen=True)
class WeightedSum:
    """``sum_i weights[i] * score_i`` (Qdrant's formula query over ``$score[i]``). ``optional``: the terms a
    candidate may have no score of, counted as 0 (the lexical term: a title sharing no word with the query's
    is not scored by a sparse vector), where a missing dense score drops the candidate (deleted meanwhile)."""

    weights: tuple[float, ...]
    optional: tuple[int, ...] = ()


@dataclass(frozen=True)
class Rrf:
    """Reciprocal rank fusion with Qdrant's ``k``; ``weights`` None is the unweighted rule."""

    k: int
    weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Dbsf:
    """Distribution-based score fusion."""


Combination = WeightedSum | Rrf | Dbsf


@dataclass(frozen=True)
class Share:
    """One vector's part in a hit's fused score, as ``explain`` sees it."""

    weight: float  # the route's weight of the vector (negative taken as 0)
    total: float  # the sum of those weights over the query's vectors
    cosine: float  # the hit's cosine similarity to the query's vector
    rank: int | None  # 0-based rank of the hit in the vector's candidate list (None: not in it)
    scores: Sequence[float]  # that candidate list's scores, best first


class FusionRule(ABC):
    # Every candidate of the union is rescored by each vector, so its fused score is its own: a zero-weight
    # list still brings candidates, and excluded ids may be dropped after the query without changing
    # anyone's score. A rank or distribution rule sees the lists as filtered: it rescores nothing.
    rescores = False

    @abstractmethod
    def combine(self, weights: Sequence[float], rrf_k: int) -> Combination:
        """The fusion of the lists whose route weights are ``weights`` (positive ones only unless ``rescores``)."""

    @abstractmethod
    def contribution(self, share: Share, rrf_k: int) -> float:
        """The vector's share of the fused score (the shares of a hit sum to its score)."""


class WeightedSumRule(FusionRule):
    rescores = True

    def combine(self, weights: Sequence[float], rrf_k: int) -> Combination:
        total = sum(max(0.0, w) for w in weights)
        return WeightedSum(tuple(max(0.0, w) / total for w in weights))

    def contribution(self, share: Share, rrf_k: int) -> float:
        return share.weight / share.total * share.cosine


class RrfRule(FusionRule):
    def __init__(self, weighted: bool) -> None:
        self.weighted = weighted

    def combine(self, weights: Sequence[float], rrf_k: int) -> Combination:
        return Rrf(rrf_k, tuple(float(w) for w in weights) if self.weighted else None)

    def contribution(self, share: Share, rrf_k: int) -> float:
        w = share.weight if self.weighted else (1.0 if share.weight > 0 else 0.0)
        if share.rank is None or w <= 0:
            return 0.0
        # Qdrant's weighted RRF: 1 / ((rank + 1) / w + k - 1), rank counted from 0.
        return 1.0 / ((share.rank + 1) / w + rrf_k - 1)


class DbsfRule(FusionRule):
    def combine(self, weights: Sequence[float], rrf_k: int) -> Combination:
        return Dbsf()

    def contribution(self, share: Share, rrf_k: int) -> float:
        """Qdrant's DBSF scaling of the score at the rank: (s - (mean - 3 sd)) / (6 sd), sample sd."""
        if share.rank is None:
            return 0.0
        scores = np.array(share.scores, np.float64)
        if len(scores) < 2 or scores.std(ddof=1) == 0:
            return 0.5
        mean, sd = scores.mean(), scores.std(ddof=1)
        return float((scores[share.rank] - (mean - 3 * sd)) / (6 * sd))


RULES: dict[Fusion, FusionRule] = {
    Fusion.wsum: WeightedSumRule(),
    Fusion.wrrf: RrfRule(weighted=True),
    Fusion.rrf: RrfRule(weighted=False),
    Fusion.dbsf: DbsfRule(),
}
