"""A ``QueryPlan`` and its conditions in qdrant-client's types (nothing is decided here: see ``plan.py``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from qdrant_client import models

from niteru.fusion import Dbsf, Rrf, WeightedSum
from niteru.lexical import Sparse
from niteru.store.plan import Between, Condition, Conditions, Match, Nearest, Prefetch, QueryPlan
from niteru.store.quantization import VectorQuantization


def to_filter(c: Conditions | None) -> models.Filter | None:
    if c is None:
        return None
    must, must_not = [_condition(x) for x in c.must], [_condition(x) for x in c.must_not]
    return models.Filter(must=must or None, must_not=must_not or None)


def _condition(c: Condition) -> models.Condition:
    if isinstance(c, Match):
        return models.FieldCondition(key=c.key, match=models.MatchValue(value=c.value))
    if isinstance(c, Between):
        return models.FieldCondition(key=c.key, range=models.Range(gte=c.gte, lte=c.lte))
    return models.HasIdCondition(has_id=[str(i) for i in c.point_ids])


def to_sparse(value: Sparse) -> models.SparseVector:
    """A lexical vector (indices, values) as qdrant-client takes it, in a query or a written point."""
    indices, values = value
    return models.SparseVector(indices=indices, values=values)


def _vector(q: Nearest) -> list[float] | models.SparseVector:
    return to_sparse(q.vector) if isinstance(q.vector, tuple) else q.vector


def _prefetch(p: Prefetch, params: Callable[[str], models.SearchParams | None]) -> models.Prefetch:
    return models.Prefetch(
        prefetch=[_prefetch(s, params) for s in p.sources] or None,
        query=_vector(p.query),
        using=p.query.using,
        filter=to_filter(p.filter),
        params=params(p.query.using),
        limit=p.limit,
    )


def _query(plan: QueryPlan) -> models.Query | list[float] | models.SparseVector:
    q = plan.query
    if isinstance(q, Nearest):
        if plan.mmr is not None:
            mmr = models.Mmr(diversity=plan.mmr.diversity, candidates_limit=plan.mmr.candidates)
            return models.NearestQuery(nearest=_vector(q), mmr=mmr)
        return _vector(q)
    if isinstance(q, WeightedSum):
        terms: list[models.Expression] = [
            models.MultExpression(mult=[w, f"$score[{i}]"]) for i, w in enumerate(q.weights)
        ]
        defaults = {f"$score[{i}]": 0.0 for i in q.optional} or None
        return models.FormulaQuery(formula=models.SumExpression(sum=terms), defaults=defaults)
    if isinstance(q, Rrf):
        return models.RrfQuery(rrf=models.Rrf(k=q.k, weights=None if q.weights is None else list(q.weights)))
    assert isinstance(q, Dbsf)
    return models.FusionQuery(fusion=models.Fusion.DBSF)


def search_params(
    plan: QueryPlan, quantization: Mapping[str, VectorQuantization]
) -> Callable[[str], models.SearchParams | None]:
    """The search parameters of each named vector: a quantized one rescored with oversampling; an exact
    plan reads the float32 originals only."""

    def params(using: str) -> models.SearchParams | None:
        q = quantization.get(using)
        if q is None:
            return models.SearchParams(exact=True) if plan.exact else None
        if plan.exact:
            return models.SearchParams(exact=True, quantization=models.QuantizationSearchParams(ignore=True))
        tuning = models.QuantizationSearchParams(rescore=q.rescore, oversampling=q.oversampling)
        return models.SearchParams(quantization=tuning)

    return params


def to_request(plan: QueryPlan, quantization: Mapping[str, VectorQuantization] | None = None) -> models.QueryRequest:
    params = search_params(plan, quantization or {})
    return models.QueryRequest(
        prefetch=[_prefetch(p, params) for p in plan.prefetches] or None,
        query=_query(plan),
        using=plan.query.using if isinstance(plan.query, Nearest) else None,
        filter=to_filter(plan.filter),
        params=params(plan.query.using) if isinstance(plan.query, Nearest) else None,
        limit=plan.limit,
        with_payload=plan.with_payload,
        with_vector=plan.fetch_vectors,
    )
