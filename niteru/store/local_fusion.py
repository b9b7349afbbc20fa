"""A fused ``QueryPlan`` run as plain nearest queries, fused here: what Qdrant's Query API computes.

Why: Edge's own query with prefetches and a fusion (formula, RRF, DBSF) costs several times the plain
searches it is made of (``bench/results/edge_fused_threads.md``, ``fused_query.md``: the plain queries fused
here are 1.2-1.35x faster at 1-4 threads, and through the API). It was first thought that plain queries
release the GIL and the fused one does not; py-spy later showed every Edge call holding it
(``bench/results/api_latency-threads.md``), so the gain is the cheaper execution, not parallelism.

The plan stays the one of ``plan.py``; this module only executes it, in three engine calls:
1. the per-vector candidate lists (the plan's innermost prefetches), one batch of plain queries, without
   payloads;
2. for a rescoring fusion (wsum), every candidate's missing score of each vector: a batch of queries
   restricted to those ids, which score each of them exactly (cheaper than reading their vectors into
   Python: see ``bench/results/fused_query.md``);
3. the payloads (and vectors when asked) of the fused top ``limit`` only.
The fusions are Qdrant's (``lib/segment/src/common/score_fusion.rs`` and ``reciprocal_rank_fusion.rs``):
``tests/test_store_local_fusion.py`` checks them against the engine's own fused query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import numpy as np

from niteru.fusion import Dbsf, Rrf, WeightedSum
from niteru.store.plan import Conditions, HasId, Nearest, Prefetch, QueryPlan

# Runs plain plans (one ``Nearest`` each) as one batch: scored points (``id``, ``score``) best first.
RunPlain = Callable[[Sequence[QueryPlan]], list[Sequence[Any]]]
# Records (``id``, ``payload``, ``vector``) of point ids, payloads always, vectors when asked.
Retrieve = Callable[[list[str], bool], Sequence[Any]]


# The missing scores of more candidates than this are asked for with an exact search (see ``_weighted_sum``).
RESCORE_EXACT_ABOVE = 1000


@dataclass(frozen=True)
class FusedPoint:
    """A fused result in the shape of an engine's scored point (``to_hits`` reads it alike)."""

    id: str
    score: float
    payload: dict[str, Any] | None
    vector: Any = None


def is_fused(plan: QueryPlan) -> bool:
    return not isinstance(plan.query, Nearest)


def candidate_prefetches(plan: QueryPlan) -> tuple[Prefetch, ...]:
    """The plan's per-vector candidate lists: the sources of a rescoring stage, else the prefetches."""
    first = plan.prefetches[0]
    return first.sources if first.sources else plan.prefetches


def _plain(p: Prefetch, exact: bool) -> QueryPlan:
    return QueryPlan(p.query, p.limit, p.limit, p.filter, exact=exact, with_payload=False)


def run_fused(plan: QueryPlan, run_plain: RunPlain, retrieve: Retrieve) -> list[FusedPoint]:
    """The engine's answer to the fused ``plan``, best first, computed from plain queries."""
    sources = candidate_prefetches(plan)
    answers = run_plain([_plain(p, plan.exact) for p in sources])
    # Candidates are keyed by ``_key`` of the engine's id (Edge: a uuid.UUID, whose hash is Python code run
    # hundreds of times a query; its integer hashes in C), and turned into strings only for the top.
    ids: dict[Any, Any] = {}
    lists = [[(_keyed(r.id, ids), float(r.score)) for r in answer] for answer in answers]
    q = plan.query
    if isinstance(q, WeightedSum):
        fused = _weighted_sum(plan, lists, q, run_plain, ids)
    elif isinstance(q, Rrf):
        fused = rrf_fuse(lists, q)
    else:
        assert isinstance(q, Dbsf)
        fused = dbsf_fuse(lists)
    # Best first; ties in the order Qdrant leaves them in is arbitrary, id order here (deterministic).
    top = [(str(ids[i]), s) for i, s in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[: plan.limit]]
    if not top:
        return []
    records = {str(r.id): r for r in retrieve([i for i, _ in top], plan.fetch_vectors)}
    return [
        FusedPoint(i, s, records[i].payload, records[i].vector if plan.fetch_vectors else None)
        for i, s in top
        if i in records  # deleted between the two calls: dropped, as a later query would
    ]


def _keyed(point_id: Any, ids: dict[Any, Any]) -> Any:
    """The candidate key of an engine id (its integer for a UUID), remembering the id it stands for."""
    key = point_id.int if type(point_id) is UUID else point_id
    ids[key] = point_id
    return key


def _weighted_sum(
    plan: QueryPlan,
    lists: list[list[tuple[Any, float]]],
    q: WeightedSum,
    run_plain: RunPlain,
    ids: dict[Any, Any],
) -> dict[Any, float]:
    """Every candidate of the union scored by each vector (the rescoring stages), summed with ``q``'s weights."""
    rescorers = [p.query for p in plan.prefetches]  # stage i rescores the union by vector i
    union = list(dict.fromkeys(i for lst in lists for i, _ in lst))
    known: list[dict[Any, float]] = []
    for query in rescorers:
        # A list of the same vector gives its candidates' scores already: only the others are asked for.
        scores: dict[Any, float] = {}
        for source, lst in zip(candidate_prefetches(plan), lists, strict=True):
            if source.query.using == query.using:
                scores.update(lst)
        known.append(scores)
    asks = [n for n, scores in enumerate(known) if any(i not in scores for i in union)]
    if asks:
        # Every stage that lacks scores asks for the whole union under one id filter: the engine translates
        # a filter once per batch (``edge._engine_batch``), and building Edge's id condition costs about 2.5 us
        # an id (a string id as much again), more than scoring the union's known candidates again.
        where = Conditions(must=(HasId(tuple(ids[i] for i in union)),))
        restricted = [
            QueryPlan(
                rescorers[n],
                len(union),
                len(union),
                where,
                # Below Qdrant's full-scan threshold (10,000 KB of vectors: 2,400 image vectors) a search
                # filtered to so few ids scores each of them exactly, and cheaper than ``exact`` (which
                # checks the filter on every point); above it only ``exact`` scores every one.
                exact=len(union) > RESCORE_EXACT_ABOVE,
                with_payload=False,
            )
            for n in asks
        ]
        for n, answer in zip(asks, run_plain(restricted), strict=True):
            # The lists' own scores stay (a quantized vector's list was rescored alike; kept for identity).
            known[n] = {_keyed(r.id, ids): float(r.score) for r in answer} | known[n]
    # A candidate deleted between the calls has no score of some vector: it is left out; an optional term's
    # missing score (the lexical one: no shared word) is 0, as the formula's default. (Plain floats: numpy
    # costs more than it saves on two to four terms.)
    defaults = [0.0 if n in q.optional else None for n in range(len(q.weights))]
    terms = list(zip(q.weights, known, defaults, strict=True))
    fused: dict[Any, float] = {}
    for i in union:
        total = 0.0
        for w, scores, default in terms:
            score = scores.get(i, default)
            if score is None:
                break
            total += w * score
        else:
            fused[i] = total
    return fused


def rrf_fuse(lists: list[list[tuple[Any, float]]], q: Rrf) -> dict[Any, float]:
    """Qdrant's (weighted) RRF: each list adds ``1 / ((rank + 1) / w + k - 1)``, rank from 0."""
    out: dict[Any, float] = {}
    for n, lst in enumerate(lists):
        w = 1.0 if q.weights is None else q.weights[n]
        for rank, (i, _) in enumerate(lst):
            out[i] = out.get(i, 0.0) + 1.0 / ((rank + 1) / w + q.k - 1)
    return out


def dbsf_fuse(lists: list[list[tuple[Any, float]]]) -> dict[Any, float]:
    """Qdrant's DBSF: each list's scores mapped from mean -+ 3 sample sd to 0..1 (0.5 when they are all
    equal or alone), summed."""
    out: dict[Any, float] = {}
    for lst in lists:
        if not lst:
            continue
        s = np.asarray([score for _, score in lst], np.float32)
        if len(s) < 2:
            normed = np.full(len(s), 0.5, np.float32)
        else:
            mean, sd = np.float32(s.mean()), np.float32(s.std(ddof=1))
            low, high = mean - 3 * sd, mean + 3 * sd
            normed = np.full(len(s), 0.5, np.float32) if low == high else (s - low) / (high - low)
        for (i, _), v in zip(lst, normed, strict=True):
            out[i] = out.get(i, 0.0) + float(v)
    return out
