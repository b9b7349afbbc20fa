"""Qdrant Edge query shapes: the same filters and fused queries as ``qdrant_filters`` in Edge's own types.

Edge runs Qdrant's Query API itself (prefetch, RRF with weights, DBSF, formula queries), so the hybrid
query has exactly the shape the qdrant-client implementation sends, and both engines rank alike (the
parametrised store tests hold them to it). Only the type names differ, and a few calls the stubs get
wrong: ``HasIdCondition`` wants a set, ``Formula``/``Expression`` are positional.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from niteru.products import Product, point_id
from niteru.store.base import Fusion, Hit, SearchFilter


def _qe() -> Any:
    import qdrant_edge

    return qdrant_edge


def to_filter(f: SearchFilter | None) -> Any:
    if f is None:
        return None
    qe = _qe()
    must: list[Any] = [
        qe.FieldCondition(key=key, match=qe.MatchValue(value))
        for key, value in (("category", f.category), ("subcategory", f.subcategory), ("shop_id", f.shop_id))
        if value is not None
    ]
    if f.price_min is not None or f.price_max is not None:
        # Products without a price never match a price range (as on a Qdrant server).
        must.append(qe.FieldCondition(key="price", range=qe.RangeFloat(gte=f.price_min, lte=f.price_max)))
    must_not: list[Any] = []
    if f.exclude_shop_id is not None:
        must_not.append(qe.FieldCondition(key="shop_id", match=qe.MatchValue(f.exclude_shop_id)))
    if f.exclude_product_ids:
        must_not.append(qe.HasIdCondition({point_id(p) for p in f.exclude_product_ids}))
    if not must and not must_not:
        return None
    return qe.Filter(must=must or None, must_not=must_not or None)


def version_at_most(floor: int) -> Any:
    """The conditional write's condition: the stored ``image_version`` is <= ``floor``."""
    qe = _qe()
    return qe.Filter(must=[qe.FieldCondition(key="image_version", range=qe.RangeFloat(lte=floor))])


def nearest(vector: np.ndarray, name: str) -> Any:
    return _qe().Query.Nearest(np.asarray(vector, np.float32).tolist(), using=name)


def fused_request(
    vectors: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    names: Sequence[str],
    fusion: Fusion,
    candidates: int,
    query_filter: Any,
    rrf_k: int,
    params: Any,
) -> tuple[list[Any], Any]:
    """``prefetches`` and ``query`` of a hybrid query over ``names`` (see ``qdrant_filters.fused_query``)."""
    qe = _qe()
    lists = [
        qe.Prefetch(limit=candidates, query=nearest(vectors[n], n), filter=query_filter, params=params) for n in names
    ]
    if fusion is Fusion.wsum:
        # Rescore the union of the lists by each vector, then fused = sum_n w_n / sum(w) * cos_n.
        total = sum(max(0.0, float(weights.get(n, 0.0))) for n in names)
        rescored = [
            qe.Prefetch(limit=candidates * len(names), prefetches=lists, query=nearest(vectors[n], n), params=params)
            for n in names
        ]
        terms = [
            qe.Expression.Mult(
                [
                    qe.Expression.Constant(max(0.0, float(weights.get(n, 0.0))) / total),
                    qe.Expression.Variable(f"$score[{i}]"),
                ]
            )
            for i, n in enumerate(names)
        ]
        return rescored, qe.Formula(qe.Expression.Sum(terms))
    if fusion is Fusion.wrrf:
        return lists, qe.Fusion.Rrf(k=rrf_k, weights=[float(weights[n]) for n in names])
    if fusion is Fusion.rrf:
        return lists, qe.Fusion.Rrf(k=rrf_k)
    return lists, qe.Fusion.Dbsf()


def named_vectors(vector: Any) -> dict[str, np.ndarray]:
    if not isinstance(vector, dict):
        return {}
    return {n: np.asarray(v, np.float32) for n, v in vector.items()}


def to_hits(points: Sequence[Any]) -> list[Hit]:
    return [
        Hit(Product.model_validate(p.payload), float(p.score), named_vectors(p.vector)) for p in points if p.payload
    ]
