"""The routing fit's grid and data (``niteru.route_fit``): the collection as the fit sees it and its variants
(``fit_inputs``), its validation queries, every route of the grid, and one measure per route of its fused
results.

Split off the fit itself so that the fit reads as the rule it applies (eligibility, held-out check).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product as cartesian
from typing import TypeVar

import numpy as np

from niteru.fusion import RULES, Fusion
from niteru.lexical import VECTOR as LEXICAL
from niteru.products import Product
from niteru.route_lists import CandidateLists, fused_hits
from niteru.route_looks import attributes
from niteru.settings import Settings
from niteru.store import VECTOR_NAMES, ProductPoint, ProductStore

K = 10
TIE = 1e-9  # scores closer than this are equal (precision@10 moves in steps of 0.1 / queries)


@dataclass(frozen=True)
class FitData:
    """The collection as the fit sees it: row i is one product."""

    product_ids: list[str]
    categories: list[str]
    subcategories: np.ndarray  # integer code of each product's subcategory
    queryable: np.ndarray  # bool: the shop gave the category, and there is a subcategory
    vectors: dict[str, np.ndarray]  # name -> (products, dim) float32, L2-normalised (zeros where missing)
    colours: np.ndarray | None = None  # the colours each title names (route_looks.attributes); None: unknown
    brands: np.ndarray | None = None  # each product's brand code, -1: unknown
    titles: list[str] | None = None  # for the lexical (BM25) term; None: no route weighs it

    @classmethod
    def of(cls, points: Sequence[ProductPoint]) -> FitData:
        names = [n for n in VECTOR_NAMES if any(n in p.vectors for p in points)]
        dims = {n: next(len(p.vectors[n]) for p in points if n in p.vectors) for n in names}
        vectors = {
            n: np.stack([np.asarray(p.vectors.get(n, np.zeros(dims[n])), np.float32) for p in points]) for n in names
        }
        subs = [p.product.subcategory for p in points]
        codes = {s: i for i, s in enumerate(sorted(set(subs)))}
        titles = [p.product.title for p in points]
        colour_masks, brands = attributes(titles, [p.product.shop_id for p in points])
        return cls(
            [p.product.product_id for p in points],
            [p.product.category for p in points],
            np.array([codes[s] for s in subs], np.int64),
            np.array([bool(p.product.subcategory) and not p.product.category_estimated for p in points]),
            vectors,
            colour_masks,
            brands,
            titles,
        )


@dataclass(frozen=True)
class Variants:
    """Re-listed variants of some products (``niteru.lookalike``: re-shot photo, re-written title), embedded
    by the new collection's models: ``originals`` are the products' rows, ``vectors`` name -> (variants, dim),
    ``titles`` their re-written titles (the lexical term's queries; None: unknown)."""

    originals: np.ndarray
    vectors: dict[str, np.ndarray]
    titles: list[str] | None = None


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
    lexical: float = 0.0  # the BM25 bonus's weight (wsum only; not normalised with the dense weights)

    def distance(self, other: Choice) -> tuple[bool, float, float]:
        """Another fusion first, then the dense weights, then the lexical one: among equals the fit keeps
        the route nearest its anchor, so no bonus unless one scores better."""
        dense = float(np.abs(np.subtract(self.weights, other.weights)).sum())
        return self.fusion is not other.fusion, dense, abs(self.lexical - other.lexical)

    def route(self, names: Sequence[str]) -> dict[str, float]:
        """The route's weights as a table row and the store take them (``lexical`` only when positive)."""
        weights = dict(zip(names, self.weights, strict=True))
        return weights | {LEXICAL: self.lexical} if self.lexical > 0 else weights


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


def routes(n: int, step: float, lexical: Sequence[float] = ()) -> list[Choice]:
    """The fit's grid: every weight vector of ``n`` vectors in multiples of ``step`` times every fusion,
    and for ``wsum`` (the only fusion that weighs it) times every ``lexical`` weight, 0 always included."""
    bonuses = sorted({0.0, *(float(w) for w in lexical if w > 0)})
    return [
        Choice(fusion, weights, bonus)
        for fusion in RULES
        for weights in grid(n, step)
        for bonus in (bonuses if fusion is Fusion.wsum else [0.0])
    ]


def per_route(
    lists: CandidateLists, choices: Sequence[Choice], rrf_k: int, measure: Callable[[np.ndarray], T]
) -> dict[Choice, T]:
    """``measure`` of each route's fused top ``K`` (the rows of ``lists``' queries). Rank and distribution
    fusions ignore the weights but for which lists take part (and the lexical one), so each such set is
    computed once."""
    out: dict[Choice, T] = {}
    done: dict[tuple[Fusion, tuple[bool, ...]], T] = {}
    for c in choices:
        key = (c.fusion, tuple(w > 0 for w in c.weights))
        if c.fusion in (Fusion.rrf, Fusion.dbsf) and key in done:
            out[c] = done[key]
            continue
        hits = fused_hits(lists, c.route(lists.names), c.fusion, K, rrf_k)
        out[c] = done[key] = measure(hits)
    return out


# Gives the embedded variants of the products, made with the seed given, by the original's product id.
EmbedVariants = Callable[[Sequence[Product], int], Mapping[str, ProductPoint]]
# At most this many variants of one validation query: a small store's few queries would otherwise take dozens
# each (2,400 variants of 60 queries: 40 rounds of photo embedding) for a figure its few queries bound anyway.
VARIANT_ROUNDS = 3


def fit_inputs(
    store: ProductStore, settings: Settings, embed_variants: EmbedVariants | None = None
) -> tuple[FitData, Variants | None]:
    """What ``fit_table`` reads: the collection, and ``route_fit_variants`` variants of an even spread of its
    validation queries when ``embed_variants`` is given. More variants than queries: each query gets one per
    round (``VARIANT_ROUNDS`` at most), each round with its own seed (``route_fit_seed + 1 + round``), so a
    category's variant recall@1 counts several re-listings of each of its queries."""
    points = [p for batch in store.scroll(batch_size=1024, with_vectors=True) for p in batch]
    data = FitData.of(points)
    if embed_variants is None or settings.route_fit_variants <= 0:
        return data, None
    rows = {pid: i for i, pid in enumerate(data.product_ids)}
    pool = [points[i].product for i in validation_queries(data, settings)]
    names = tuple(data.vectors)
    found: list[ProductPoint] = []
    left, seed = min(settings.route_fit_variants, VARIANT_ROUNDS * len(pool)), settings.route_fit_seed + 1
    while pool and left > 0:
        # Evenly over the pool (in category order), so every category gets its share: a stride of
        # len // n took the first n of a pool under twice n, and the last categories got none.
        n = min(left, len(pool))
        embedded = embed_variants([pool[i] for i in np.linspace(0, len(pool) - 1, n).round().astype(int)], seed)
        found += [v for pid, v in embedded.items() if pid in rows and set(names) <= set(v.vectors)]
        left, seed = left - n, seed + 1
    if not found:
        return data, None
    vectors = {n: np.stack([v.vectors[n] for v in found]).astype(np.float32) for n in names}
    originals = np.array([rows[v.product.product_id] for v in found], np.int64)
    return data, Variants(originals, vectors, [v.product.title for v in found])
