"""Fit the routing table on a collection: per category, the weights of its vectors and the fusion rule that
score best on a validation split of its products (issue 17, part 3). The rebuild calls ``fit_routes`` on
its new collection before the swap and saves the table with it (``niteru.route_table``).

- **Split**: a product is a validation query when a seeded hash of its id falls below
  ``route_fit_validation_share`` (``in_validation``; ``bench/relevance.py`` takes its queries from the
  others). Queries are products whose category the shop gave, with a subcategory; at most
  ``route_fit_max_queries`` per category (a seeded sample). Each searches the whole collection.
- **Search**: exact, in numpy (``niteru.route_lists``): the store's query for every route of the grid
  would take minutes; the emulation ranks like the store and takes seconds.
- **Grid**: every weight vector over the collection's vectors (``VECTOR_NAMES``: image, text, and any
  other the store gains) whose parts are multiples of ``route_fit_step`` summing to 1, times every fusion
  rule (``niteru.fusion.RULES``).
- **Objective**: ``OBJECTIVES[route_fit_objective]``, a function of the queries and their results,
  one score per query (so look-alike measures can join).
- **Global row**: the best over all validation queries; ties go to the ``fusion`` setting at equal weights.
- **A category's row**: with fewer than ``route_fit_min_queries`` queries, the global row. Else its queries
  are halved (seeded): the best on the first half (ties go to the global row) is kept only when it scores
  at least the global row on the second, held-out half; otherwise the category takes the global row. A
  category never takes weights that a held-out check found worse than the global ones.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import product as cartesian
from typing import TypeVar

import numpy as np

from niteru.fusion import RULES, Fusion
from niteru.products import Product
from niteru.route_lists import CandidateLists, candidate_lists, candidate_lists_of, fused_hits
from niteru.route_table import RouteTable, Row
from niteru.settings import Settings
from niteru.store import VECTOR_NAMES, ProductPoint, ProductStore

log = logging.getLogger(__name__)
K = 10
TIE = 1e-9  # scores closer than this are equal (precision@10 moves in steps of 0.1 / queries)


class NothingToFitError(ValueError):
    """No product can be a validation query (none has a shop-given category and a subcategory)."""


@dataclass(frozen=True)
class FitData:
    """The collection as the fit sees it: row i is one product."""

    product_ids: list[str]
    categories: list[str]
    subcategories: np.ndarray  # integer code of each product's subcategory
    queryable: np.ndarray  # bool: the shop gave the category, and there is a subcategory
    vectors: dict[str, np.ndarray]  # name -> (products, dim) float32, L2-normalised (zeros where missing)

    @classmethod
    def of(cls, points: Sequence[ProductPoint]) -> FitData:
        names = [n for n in VECTOR_NAMES if any(n in p.vectors for p in points)]
        dims = {n: next(len(p.vectors[n]) for p in points if n in p.vectors) for n in names}
        vectors = {
            n: np.stack([np.asarray(p.vectors.get(n, np.zeros(dims[n])), np.float32) for p in points]) for n in names
        }
        subs = [p.product.subcategory for p in points]
        codes = {s: i for i, s in enumerate(sorted(set(subs)))}
        return cls(
            [p.product.product_id for p in points],
            [p.product.category for p in points],
            np.array([codes[s] for s in subs], np.int64),
            np.array([bool(p.product.subcategory) and not p.product.category_estimated for p in points]),
            vectors,
        )


@dataclass(frozen=True)
class Variants:
    """Re-listed variants of some products (``niteru.lookalike``: re-shot photo, re-written title), embedded
    by the new collection's models: ``originals`` are the products' rows, ``vectors`` name -> (variants, dim)."""

    originals: np.ndarray
    vectors: dict[str, np.ndarray]


T = TypeVar("T")

# One score per query from the queries' rows and their results' rows (-1: no result).
Objective = Callable[[FitData, np.ndarray, np.ndarray], np.ndarray]


def precision_at_k(data: FitData, queries: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """Share of the results in the query's subcategory (a missing result counts as wrong)."""
    same = data.subcategories[np.maximum(hits, 0)] == data.subcategories[queries][:, None]
    return np.asarray((same & (hits >= 0)).sum(axis=1) / hits.shape[1], np.float64)


OBJECTIVES: dict[str, Objective] = {"precision@10": precision_at_k}


@dataclass(frozen=True)
class Choice:
    fusion: Fusion
    weights: tuple[float, ...]  # in the order of the fit's vector names

    def distance(self, other: Choice) -> tuple[bool, float]:
        return self.fusion is not other.fusion, float(np.abs(np.subtract(self.weights, other.weights)).sum())


def in_validation(product_id: str, settings: Settings) -> bool:
    """Whether the fit scores this product's queries (seeded, stable across runs and machines)."""
    digest = hashlib.sha256(f"{settings.route_fit_seed}:{product_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < settings.route_fit_validation_share


def grid(n: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector of ``n`` parts, multiples of ``step``, summing to 1."""
    units = round(1 / step)
    return [tuple(u / units for u in parts) for parts in cartesian(range(units + 1), repeat=n) if sum(parts) == units]


def validation_queries(data: FitData, settings: Settings) -> np.ndarray:
    rng = np.random.default_rng(settings.route_fit_seed)
    by_category: dict[str, list[int]] = {}
    for i, (pid, category) in enumerate(zip(data.product_ids, data.categories, strict=True)):
        if data.queryable[i] and in_validation(pid, settings):
            by_category.setdefault(category, []).append(i)
    chosen: list[int] = []
    for _, rows in sorted(by_category.items()):
        if len(rows) > settings.route_fit_max_queries:
            rows = sorted(rng.choice(rows, settings.route_fit_max_queries, replace=False).tolist())
        chosen += rows
    return np.array(chosen, np.int64)


def routes(n: int, step: float) -> list[Choice]:
    """The fit's grid: every weight vector of ``n`` vectors in multiples of ``step`` times every fusion."""
    return [Choice(fusion, weights) for fusion in RULES for weights in grid(n, step)]


def per_route(
    lists: CandidateLists, choices: Sequence[Choice], rrf_k: int, measure: Callable[[np.ndarray], T]
) -> dict[Choice, T]:
    """``measure`` of each route's fused top ``K`` (the rows of ``lists``' queries). Rank and distribution
    fusions ignore the weights but for which lists take part, so each such set is computed once."""
    out: dict[Choice, T] = {}
    done: dict[tuple[Fusion, tuple[bool, ...]], T] = {}
    for c in choices:
        key = (c.fusion, tuple(w > 0 for w in c.weights))
        if c.fusion in (Fusion.rrf, Fusion.dbsf) and key in done:
            out[c] = done[key]
            continue
        hits = fused_hits(lists, dict(zip(lists.names, c.weights, strict=True)), c.fusion, K, rrf_k)
        out[c] = done[key] = measure(hits)
    return out


def score_grid(
    data: FitData, queries: np.ndarray, lists: CandidateLists, settings: Settings
) -> dict[Choice, np.ndarray]:
    """Every route's per-query score (the objective)."""
    objective = OBJECTIVES[settings.route_fit_objective]
    choices = routes(len(lists.names), settings.route_fit_step)
    return per_route(lists, choices, settings.rrf_k, lambda hits: objective(data, queries, hits))


def variant_grid(
    data: FitData, variants: Variants, choices: Sequence[Choice], settings: Settings
) -> dict[Choice, float]:
    """Every route's variant recall@1: the share of variants whose first result is their original."""
    names = tuple(data.vectors)
    lists = candidate_lists_of(data.vectors, {n: variants.vectors[n] for n in names}, K, names)
    return per_route(lists, choices, settings.rrf_k, lambda hits: float(np.mean(hits[:, 0] == variants.originals)))


def best(scores: dict[Choice, np.ndarray], mask: np.ndarray, anchor: Choice) -> Choice:
    """The best choice on the queries of ``mask``; among equals, the nearest to ``anchor``."""
    means = {c: float(s[mask].mean()) for c, s in scores.items()}
    top = max(means.values())
    return min((c for c, m in means.items() if m >= top - TIE), key=lambda c: c.distance(anchor))


def held_out_choice(
    scores: dict[Choice, np.ndarray], first: np.ndarray, second: np.ndarray, top: Choice
) -> tuple[Choice, str, dict[str, float]]:
    """A category's choice: its best on the ``first`` queries, kept only if it scores at least the global
    ``top`` on the held-out ``second`` ones; else ``top``. Returns the choice, its basis and the check."""
    choice = best(scores, first, top)
    check = {"row": float(scores[choice][second].mean()), "global": float(scores[top][second].mean())}
    if check["row"] >= check["global"] - TIE:
        return choice, "fitted", check
    return top, "global: not better on held-out", check


def fit_table(data: FitData, settings: Settings, collection: str, variants: Variants | None = None) -> RouteTable:
    """The table: per category the route of best precision@10 among the eligible ones. With ``variants``,
    a route is eligible only if its variant recall@1 is within ``route_fit_variant_tolerance`` of the best
    route's: precision@10 counts the label, and a route leaning on a vector trained on the label (joint)
    can raise it while a re-listed product no longer finds its original first (the look-alike it lost)."""
    started = time.perf_counter()
    names = tuple(data.vectors)
    queries = validation_queries(data, settings)
    if len(queries) < settings.route_fit_min_queries:
        # Too few to fit even the global row: the hand-written default table is the better guess.
        raise NothingToFitError(
            f"{len(queries)} validation queries (products in the split with a shop-given category and a "
            f"subcategory), fewer than route_fit_min_queries={settings.route_fit_min_queries}"
        )
    lists = candidate_lists(data.vectors, queries, K, names)
    searched = time.perf_counter()
    scores = score_grid(data, queries, lists, settings)
    eligible, recall = scores, {}
    if variants is not None and len(variants.originals) and set(names) <= set(variants.vectors):
        recall = variant_grid(data, variants, list(scores), settings)
        floor = max(recall.values()) - settings.route_fit_variant_tolerance
        eligible = {c: v for c, v in scores.items() if recall[c] >= floor}
    everyone = np.ones(len(queries), bool)
    anchor = Choice(settings.fusion, tuple(1 / len(names) for _ in names))
    top = best(eligible, everyone, anchor)
    singles = {n: Choice(Fusion.wsum, tuple(float(m == n) for m in names)) for n in names}

    def row(choice: Choice, mask: np.ndarray, basis: str, held_out: dict[str, float] | None = None) -> Row:
        return Row(
            weights=dict(zip(names, choice.weights, strict=True)),
            fusion=choice.fusion,
            basis=basis,
            queries=int(mask.sum()),
            score=float(scores[choice][mask].mean()),
            global_score=float(scores[top][mask].mean()),
            single={n: float(scores[c][mask].mean()) for n, c in singles.items()},
            held_out=held_out or {},
        )

    rng = np.random.default_rng(settings.route_fit_seed + 1)
    query_categories = np.array([data.categories[q] for q in queries])
    rows: dict[str, Row] = {}
    for category in sorted(set(query_categories.tolist())):
        mask = query_categories == category
        if mask.sum() < settings.route_fit_min_queries:
            rows[category] = row(top, mask, "global: too few queries")
            continue
        where = np.flatnonzero(mask)[rng.permutation(int(mask.sum()))]
        first, second = np.zeros_like(mask), np.zeros_like(mask)
        first[where[: len(where) // 2]] = True
        second[where[len(where) // 2 :]] = True
        choice, basis, check = held_out_choice(eligible, first, second, top)
        rows[category] = row(choice, mask, basis, check)
    elapsed = time.perf_counter() - started
    info = {
        "products": len(data.product_ids),
        "validation_queries": len(queries),
        "vectors": list(names),
        "grid": len(scores),
        "eligible": len(eligible),
        "variants": 0 if variants is None else len(variants.originals),
        "variant_r1_best": max(recall.values()) if recall else None,
        "variant_r1_global": recall.get(top),
        "variant_tolerance": settings.route_fit_variant_tolerance,
        "search": "exact cosine in numpy over the whole collection (niteru/route_lists.py)",
        "search_s": round(searched - started, 2),
        "fit_s": round(elapsed, 2),
        "validation_share": settings.route_fit_validation_share,
        "seed": settings.route_fit_seed,
        "step": settings.route_fit_step,
        "min_queries": settings.route_fit_min_queries,
        "max_queries": settings.route_fit_max_queries,
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    table = RouteTable(
        f"{collection}@{stamp}", collection, settings.route_fit_objective, row(top, everyone, "global"), rows, info
    )
    log.info("routing fitted on %s: %d queries, %d routes, %.1f s", collection, len(queries), len(scores), elapsed)
    return table


def fit_routes(
    store: ProductStore,
    settings: Settings,
    collection: str,
    embed_variants: Callable[[Sequence[Product]], dict[str, dict[str, np.ndarray]]] | None = None,
) -> RouteTable:
    """Fit the table on ``store`` (a collection pinned by the rebuild), reading every product once.
    ``embed_variants``: the vectors of re-listed variants of the products given, by product id (the rebuild
    passes the new collection's models); without it the fit counts precision@10 alone."""
    points = [p for batch in store.scroll(batch_size=1024, with_vectors=True) for p in batch]
    data = FitData.of(points)
    variants = None
    if embed_variants is not None and settings.route_fit_variants > 0:
        rows = {pid: i for i, pid in enumerate(data.product_ids)}
        pool = [points[i].product for i in validation_queries(data, settings)]
        step = max(1, len(pool) // settings.route_fit_variants)
        embedded = embed_variants(pool[::step][: settings.route_fit_variants])
        names = tuple(data.vectors)
        found = [pid for pid, v in embedded.items() if pid in rows and set(names) <= set(v)]
        if found:
            vectors = {n: np.stack([embedded[pid][n] for pid in found]).astype(np.float32) for n in names}
            variants = Variants(np.array([rows[pid] for pid in found], np.int64), vectors)
    return fit_table(data, settings, collection, variants)
