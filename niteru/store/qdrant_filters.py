"""Qdrant query shapes: SearchFilter to a Qdrant filter, and the hybrid (prefetch + fusion) query."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from qdrant_client import models

from niteru.products import point_id
from niteru.store.base import Fusion, SearchFilter

# Each fused vector brings this many candidates per result asked for (at least PREFETCH_MIN).
PREFETCH_FACTOR = 4
PREFETCH_MIN = 50


def prefetch_size(limit: int) -> int:
    return max(PREFETCH_MIN, PREFETCH_FACTOR * limit)


def to_filter(f: SearchFilter | None) -> models.Filter | None:
    if f is None:
        return None
    must: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value))
        for key, value in (("category", f.category), ("subcategory", f.subcategory), ("shop_id", f.shop_id))
        if value is not None
    ]
    if f.price_min is not None or f.price_max is not None:
        # Products without a price never match a price range.
        must.append(models.FieldCondition(key="price", range=models.Range(gte=f.price_min, lte=f.price_max)))
    must_not: list[models.Condition] = []
    if f.exclude_shop_id is not None:
        must_not.append(models.FieldCondition(key="shop_id", match=models.MatchValue(value=f.exclude_shop_id)))
    if f.exclude_product_ids:
        must_not.append(models.HasIdCondition(has_id=[point_id(p) for p in f.exclude_product_ids]))
    if not must and not must_not:
        return None
    return models.Filter(must=must or None, must_not=must_not or None)


def fused_query(
    vectors: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    names: Sequence[str],
    fusion: Fusion,
    candidates: int,
    query_filter: models.Filter | None,
    rrf_k: int,
) -> dict[str, Any]:
    """``prefetch`` and ``query`` arguments of ``query_points`` for a hybrid query over ``names``.

    The filter goes into every prefetch as well as the top level: each candidate list is already
    restricted, so no list is filled with products the filter would drop.
    """
    lists = [
        models.Prefetch(query=as_floats(vectors[n]), using=n, filter=query_filter, limit=candidates) for n in names
    ]
    if fusion is Fusion.wsum:
        # Rescore the union of the lists with each vector, so that every candidate has every score, then
        # sum them with normalised weights: fused = sum_n w_n / sum(w) * cos_n.
        total = sum(max(0.0, float(weights.get(n, 0.0))) for n in names)
        rescored = [
            models.Prefetch(prefetch=lists, query=as_floats(vectors[n]), using=n, limit=candidates * len(names))
            for n in names
        ]
        terms: list[models.Expression] = [
            models.MultExpression(mult=[max(0.0, float(weights.get(n, 0.0))) / total, f"$score[{i}]"])
            for i, n in enumerate(names)
        ]
        return {"prefetch": rescored, "query": models.FormulaQuery(formula=models.SumExpression(sum=terms))}
    if fusion is Fusion.wrrf:
        query: models.Query = models.RrfQuery(rrf=models.Rrf(k=rrf_k, weights=[float(weights[n]) for n in names]))
    elif fusion is Fusion.rrf:
        query = models.RrfQuery(rrf=models.Rrf(k=rrf_k))
    else:
        query = models.FusionQuery(fusion=models.Fusion.DBSF)
    return {"prefetch": lists, "query": query}


def as_floats(vector: np.ndarray) -> list[float]:
    return np.asarray(vector, np.float32).tolist()  # type: ignore[no-any-return]
