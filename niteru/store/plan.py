"""The engine-neutral query plan: everything a search asks of an engine, decided once.

``plan_search`` turns a request (vectors, weights, k, filter, fusion, ...) into a ``QueryPlan``: the
filter as conditions, the per-vector candidate searches (prefetches and their limits), whether their
union is rescored by each vector, the fusion (from ``niteru.fusion.RULES``), the limit, the ids the
engine leaves to be dropped after the query, and the diversity (maximal marginal relevance: the engine's
own on one vector, ``niteru.store.mmr`` over a fused query's candidates). Each engine only translates a
plan into its own types (``qdrant_plan.py``, ``edge_plan.py``), so both engines run the same query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from uuid import UUID

import numpy as np

from niteru.fusion import RULES, Combination, Fusion, WeightedSum
from niteru.lexical import Sparse
from niteru.products import point_id
from niteru.store.mmr import diversify
from niteru.store.records import LEXICAL, VECTOR_NAMES, Hit, SearchFilter, StoreSchemaError, as_floats

# Each fused vector brings this many candidates per result asked for (at least PREFETCH_MIN).
PREFETCH_FACTOR = 4
PREFETCH_MIN = 50
# MMR compares every candidate with those picked: beyond this many (or k, if more), the cost grows with no
# change to a first page. The most a shop-capped similar search asks for (and NITERU_API_MAX_K's ceiling).
MMR_MAX_CANDIDATES = 1000


def prefetch_size(limit: int) -> int:
    return max(PREFETCH_MIN, PREFETCH_FACTOR * limit)


def check_query(vectors: Mapping[str, np.ndarray], dims: Mapping[str, int], k: int | None = None) -> None:
    """The same error from every engine for the same bad call (each engine words its own differently)."""
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    for name, vector in vectors.items():
        if name not in dims:
            raise StoreSchemaError(f"the collection has no vector {name!r} (it has {sorted(dims)})")
        if np.shape(vector) != (dims[name],):
            shape = np.shape(vector)
            raise StoreSchemaError(f"vector {name!r} has shape {shape}; the collection stores {dims[name]}-d")


# --- conditions: a SearchFilter (or a write's condition) as the payload and id tests engines run --------
@dataclass(frozen=True)
class Match:
    key: str
    value: str


@dataclass(frozen=True)
class Between:
    """A numeric range; a point without the key never matches."""

    key: str
    gte: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class HasId:
    """Point ids as strings, or as the engine returned them (``local_fusion``: Edge's ``uuid.UUID``)."""

    point_ids: tuple[str | UUID, ...]


Condition = Match | Between | HasId


@dataclass(frozen=True)
class Conditions:
    must: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()


def conditions(f: SearchFilter | None) -> Conditions | None:
    """``f`` as conditions; None when it restricts nothing."""
    if f is None:
        return None
    must: list[Condition] = [
        Match(key, value)
        for key, value in (("category", f.category), ("subcategory", f.subcategory), ("shop_id", f.shop_id))
        if value is not None
    ]
    if f.price_min is not None or f.price_max is not None:
        must.append(Between("price", f.price_min, f.price_max))  # products without a price never match
    must_not: list[Condition] = []
    if f.exclude_shop_id is not None:
        must_not.append(Match("shop_id", f.exclude_shop_id))
    if f.exclude_product_ids:
        must_not.append(HasId(tuple(point_id(p) for p in f.exclude_product_ids)))
    if not must and not must_not:
        return None
    return Conditions(tuple(must), tuple(must_not))


def version_at_most(floor: int) -> Conditions:
    """The conditional write's condition: a stored point is replaced only while its image_version <= floor."""
    return Conditions(must=(Between("image_version", lte=floor),))


# --- the plan ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Nearest:
    """Cosine similarity to ``vector`` in the collection's vector ``using``; for ``LEXICAL``, the BM25 score
    of the query's sparse vector (indices, values)."""

    using: str
    vector: list[float] | Sparse


@dataclass(frozen=True)
class Prefetch:
    """A candidate list: the ``limit`` best by ``query`` among the points passing ``filter``, or, with
    ``sources``, among the union of those lists (rescoring: every candidate gets this vector's score)."""

    query: Nearest
    limit: int
    filter: Conditions | None = None
    sources: tuple[Prefetch, ...] = ()


@dataclass(frozen=True)
class Mmr:
    """Maximal marginal relevance over the ``candidates`` best: ``diversity`` in (0, 1], Qdrant's meaning
    (1 - lambda). ``vectors`` and ``weights``: a fused query's vectors and route weights (the service's
    MMR; kept here so that it does not depend on how the engine is asked for the candidates)."""

    diversity: float
    candidates: int
    vectors: tuple[Nearest, ...] = ()
    weights: tuple[float, ...] = ()


@dataclass(frozen=True)
class QueryPlan:
    """One engine query: ``query`` (one vector, or a fusion of ``prefetches``) over the points passing
    ``filter``, ``limit`` results; then ``drop_ids`` removed here and the first ``k`` kept."""

    query: Nearest | Combination
    limit: int
    k: int
    filter: Conditions | None = None
    prefetches: tuple[Prefetch, ...] = ()
    with_vectors: bool = False
    exact: bool = False  # scan every point rather than an approximate index (benchmarks)
    drop_ids: tuple[str, ...] = ()
    mmr: Mmr | None = None  # on a Nearest query the engine's MMR; on a fusion, the service's after it
    with_payload: bool = True  # False: ids and scores only (the candidate lists a fusion is computed from)

    @property
    def service_mmr(self) -> Mmr | None:
        return None if isinstance(self.query, Nearest) else self.mmr

    @property
    def fetch_vectors(self) -> bool:
        """Whether the engine returns the hits' vectors: asked, or the service's MMR compares them."""
        return self.with_vectors or self.service_mmr is not None

    def keep(self, hits: Sequence[Hit]) -> list[Hit]:
        kept = [h for h in hits if h.product.product_id not in self.drop_ids]
        if (mmr := self.service_mmr) is not None:
            query = [
                (v.using, v.vector, w)
                for v, w in zip(mmr.vectors, mmr.weights, strict=True)
                if isinstance(v.vector, list)
            ]
            return diversify(kept, query, mmr.diversity, self.k, self.with_vectors)
        return kept[: self.k]


def plan_search(
    vectors: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    k: int,
    search_filter: SearchFilter | None,
    fusion: Fusion,
    *,
    dims: Mapping[str, int],
    rrf_k: int,
    candidates: int | None = None,
    with_vectors: bool = False,
    exact: bool = False,
    slow_id_filter: bool = False,
    diversity: float = 0.0,
    lexical: Sparse | None = None,
) -> QueryPlan:
    """The plan of ``ProductStore.search``. ``slow_id_filter``: the engine filters by id point by point
    (qdrant-client's local mode) while it scans unfiltered at full speed; when the filter only excludes
    ids (the query product), the plan asks for that many more results and drops them after the query.
    ``diversity`` > 0: maximal marginal relevance over ``prefetch_size(k)`` candidates, at most
    ``MMR_MAX_CANDIDATES`` unless k is more (``Mmr``). ``lexical``: the query title's BM25 vector, used
    when ``weights`` gives ``LEXICAL`` a positive weight under a rescoring fusion (``lexical_term``)."""
    names = [n for n in VECTOR_NAMES if n in vectors]
    if not names or sum(max(0.0, float(weights.get(n, 0.0))) for n in names) <= 0:
        raise ValueError(f"no vector to search with (weights {dict(weights)}, vectors {sorted(vectors)})")
    check_query(vectors, dims, k)
    rule = RULES[fusion]
    if not rule.rescores:  # rank and distribution fusions: a zero-weight list is left out
        names = [n for n in names if weights.get(n, 0.0) > 0]
    drop: tuple[str, ...] = ()
    # Only where the excluded ids cannot change the others' scores: one list, or a rescoring fusion.
    # Ranks (rrf, wrrf) and score distributions (dbsf) must be of the filtered lists.
    f = search_filter
    # MMR compares candidates with each other: an excluded product among them would change the others'.
    if (
        not diversity
        and slow_id_filter
        and (len(names) == 1 or rule.rescores)
        and f
        and f.exclude_product_ids
        and f.only_excludes_ids
    ):
        drop, f = f.exclude_product_ids, None
    limit, where = k + len(drop), conditions(f)
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be between 0 and 1, not {diversity}")
    mmr = Mmr(diversity, max(k, min(MMR_MAX_CANDIDATES, prefetch_size(k)))) if diversity > 0 else None
    query: Nearest | Combination
    prefetches: tuple[Prefetch, ...] = ()
    lexical_weight = lexical_term(weights, fusion, lexical)
    if len(names) == 1 and not lexical_weight:
        query = Nearest(names[0], as_floats(vectors[names[0]]))
    else:
        # The lists of a search for k: MMR's candidates are the best of the products today's ranking
        # chooses from, and the engine does no more work than for k.
        size = candidates or prefetch_size(limit)
        if mmr is not None:  # the engine fuses the MMR candidates; the service picks k of them (keep)
            near = tuple(Nearest(n, as_floats(vectors[n])) for n in names)
            mmr = replace(mmr, vectors=near, weights=tuple(float(weights.get(n, 0.0)) for n in names))
            limit = mmr.candidates
        # The filter goes into every list as well as the top level: no list is filled with products the
        # filter would drop.
        prefetches = sources = tuple(Prefetch(Nearest(n, as_floats(vectors[n])), size, where) for n in names)
        if rule.rescores:
            prefetches = tuple(Prefetch(p.query, size * len(names), sources=sources) for p in sources)
        query = rule.combine([float(weights.get(n, 0.0)) for n in names], rrf_k)
        if lexical_weight and lexical is not None and isinstance(query, WeightedSum):
            # The lexical term rescores the dense lists' union and brings no list of its own: a bonus for
            # the candidates whose titles share the query's words, on top of the dense weights' sum of 1.
            prefetches += (Prefetch(Nearest(LEXICAL, lexical), size * len(names), sources=sources),)
            query = WeightedSum((*query.weights, lexical_weight), optional=(len(names),))
    return QueryPlan(query, limit, k, where, prefetches, with_vectors, exact, drop, mmr)


def lexical_term(weights: Mapping[str, float], fusion: Fusion, lexical: Sparse | None) -> float:
    """The weight of the lexical term in a search: the route's ``LEXICAL`` weight under a rescoring fusion
    (wsum), with a query title of which some word survives the tokenizer; else 0 (rank fusions have no
    scores to add it to)."""
    w = float(weights.get(LEXICAL, 0.0))
    return w if w > 0 and lexical is not None and lexical[0] and RULES[fusion].rescores else 0.0


def plan_candidates(
    vectors: Mapping[str, np.ndarray],
    k: int,
    search_filter: SearchFilter | None,
    *,
    dims: Mapping[str, int],
    candidates: int | None = None,
) -> dict[str, QueryPlan]:
    """The per-vector candidate lists a fused ``plan_search`` for ``k`` fuses, filtered alike (``explain``
    ranks against them): one plan per vector, in ``VECTOR_NAMES`` order."""
    check_query(vectors, dims, k)
    limit, where = candidates or prefetch_size(k), conditions(search_filter)
    return {n: QueryPlan(Nearest(n, as_floats(vectors[n])), limit, limit, where) for n in VECTOR_NAMES if n in vectors}
