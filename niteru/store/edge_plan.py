"""A ``QueryPlan`` and its conditions in Qdrant Edge's types (nothing is decided here: see ``plan.py``).

Edge runs Qdrant's Query API itself (prefetch, RRF with weights, DBSF, formula queries), so a plan runs
as it does on qdrant-client. A few calls the stubs get wrong: ``HasIdCondition`` wants a set,
``Formula``/``Expression`` are positional. ``qdrant_edge`` is imported on first use, never at import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from niteru.fusion import Dbsf, Rrf, WeightedSum
from niteru.store.plan import Between, Condition, Conditions, Match, Nearest, Prefetch, QueryPlan
from niteru.store.quantization import VectorQuantization


def _qe() -> Any:
    import qdrant_edge

    return qdrant_edge


def to_filter(c: Conditions | None) -> Any:
    if c is None:
        return None
    must, must_not = [_condition(x) for x in c.must], [_condition(x) for x in c.must_not]
    return _qe().Filter(must=must or None, must_not=must_not or None)


def _condition(c: Condition) -> Any:
    qe = _qe()
    if isinstance(c, Match):
        return qe.FieldCondition(key=c.key, match=qe.MatchValue(c.value))
    if isinstance(c, Between):
        return qe.FieldCondition(key=c.key, range=qe.RangeFloat(gte=c.gte, lte=c.lte))
    return qe.HasIdCondition(set(c.point_ids))


def _nearest(q: Nearest) -> Any:
    qe = _qe()
    vector = qe.SparseVector(*q.vector) if isinstance(q.vector, tuple) else q.vector
    return qe.Query.Nearest(vector, using=q.using)


def _prefetch(p: Prefetch, params: Callable[[str], Any]) -> Any:
    return _qe().Prefetch(
        limit=p.limit,
        query=_nearest(p.query),
        prefetches=[_prefetch(s, params) for s in p.sources] or None,
        filter=to_filter(p.filter),
        params=params(p.query.using),
    )


def _fusion(q: WeightedSum | Rrf | Dbsf) -> Any:
    qe = _qe()
    if isinstance(q, WeightedSum):
        terms = [
            qe.Expression.Mult([qe.Expression.Constant(w), qe.Expression.Variable(f"$score[{i}]")])
            for i, w in enumerate(q.weights)
        ]
        return qe.Formula(qe.Expression.Sum(terms), {f"$score[{i}]": 0.0 for i in q.optional} or None)
    if isinstance(q, Rrf):
        return qe.Fusion.Rrf(k=q.k) if q.weights is None else qe.Fusion.Rrf(k=q.k, weights=list(q.weights))
    return qe.Fusion.Dbsf()


def search_params(
    plan: QueryPlan, hnsw_ef: int, quantization: Mapping[str, VectorQuantization]
) -> Callable[[str], Any]:
    """The search parameters of each named vector: a quantized one rescored with oversampling; an exact
    plan (the ground truth of tests and rebuild checks) reads the float32 originals only."""
    qe = _qe()

    def params(using: str) -> Any:
        q = quantization.get(using)
        if q is None:
            return qe.SearchParams(hnsw_ef=hnsw_ef, exact=plan.exact)
        tuning = (
            qe.QuantizationSearchParams(ignore=True)
            if plan.exact
            else qe.QuantizationSearchParams(rescore=q.rescore, oversampling=q.oversampling)
        )
        return qe.SearchParams(hnsw_ef=hnsw_ef, exact=plan.exact, quantization=tuning)

    return params


def to_request(
    plan: QueryPlan,
    hnsw_ef: int,
    quantization: Mapping[str, VectorQuantization] | None = None,
    filters: dict[int, Any] | None = None,
) -> Any:
    """The plan as an Edge request; the search parameters go where the vectors are searched. ``filters``:
    the filters translated so far in this batch, by the identity of their conditions (plans sharing one
    ``Conditions`` object, as the rescoring stages of ``local_fusion`` do, share its translation)."""
    qe = _qe()
    params = search_params(plan, hnsw_ef, quantization or {})
    if filters is None:
        translated = to_filter(plan.filter)
    elif (translated := filters.get(id(plan.filter))) is None:
        translated = filters[id(plan.filter)] = to_filter(plan.filter)
    common = {"limit": plan.limit, "filter": translated, "with_payload": plan.with_payload}
    common["with_vector"] = plan.fetch_vectors
    if isinstance(plan.query, Nearest):
        q, mmr = plan.query, plan.mmr
        # Edge takes MMR's lambda (the weight of relevance), the server its complement, diversity.
        query = (
            _nearest(q)
            if mmr is None
            else qe.Mmr(q.vector, 1.0 - mmr.diversity, mmr.candidates, using=q.using)  # dense only: plan.py
        )
        return qe.QueryRequest(query=query, params=params(q.using), **common)
    prefetches = [_prefetch(p, params) for p in plan.prefetches]
    return qe.QueryRequest(prefetches=prefetches, query=_fusion(plan.query), **common)
