"""Similar products of a stored product: route, fused search, shop caps and the score breakdown.

The API, the web page and ``bench/relevance.py`` all call ``similar_products``, so the benchmark measures
the code path users get.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from niteru import lexical
from niteru.categorize import Estimator
from niteru.fusion import RULES, Fusion, Share
from niteru.refusals import Refusal
from niteru.route_table import RouteTable
from niteru.routing import Mode, Route, route
from niteru.settings import Settings
from niteru.store import Hit, ProductStore, SearchFilter, StoreSchemaError
from niteru.store.plan import lexical_term
from niteru.store.records import LEXICAL

# With a per-shop cap, ask for this many times k at first, and at most this many products in all.
SHOP_CAP_OVERFETCH = 3
SHOP_CAP_MAX_FETCH = 1000


class UnknownProductError(LookupError):
    def __init__(self, product_id: str) -> None:
        super().__init__(f"no product with id {product_id!r}")
        self.product_id = product_id


@dataclass(frozen=True)
class SimilarOptions:
    k: int = 10
    mode: Mode = Mode.auto
    fusion: Fusion | None = None  # None: the ``fusion`` setting
    filter: SearchFilter = field(default_factory=SearchFilter)
    exclude_same_shop: bool = False
    max_per_shop: int | None = None
    # Maximal marginal relevance in [0, 1]: 0 (off) ranks by similarity alone; more trades similarity
    # for variety, so one product's variants or one shop's near-copies do not fill the page.
    diversity: float = 0.0
    explain: bool = False
    # Route by the classifier's estimate even when the shop gave a category (what would happen without it).
    estimate_category: bool = False


# Below this, what is left of a fused score after the dense terms is float32 rounding, not a BM25 bonus.
LEXICAL_NOISE = 1e-5


@dataclass(frozen=True)
class Explanation:
    """Why a hit scored what it did. ``scores``: cosine similarity of each vector to the query's (for
    ``lexical``: the BM25 score of the hit's title for the query's).
    ``contributions``: each vector's share of the fused score under the fusion's rule (they sum to it).
    ``ranks``: the hit's 1-based rank in each vector's candidate list (None: not in it)."""

    scores: dict[str, float]
    contributions: dict[str, float]
    ranks: dict[str, int | None]


@dataclass
class SimilarResult:
    product_id: str
    route: Route
    fusion: Fusion
    hits: list[Hit]
    explanations: list[Explanation] = field(default_factory=list)


def similar_products(
    store: ProductStore,
    product_id: str,
    settings: Settings,
    options: SimilarOptions,
    estimate: Estimator | None = None,
    fitted: RouteTable | None = None,
) -> SimilarResult:
    """The ``k`` nearest other products; the query product itself is never among them. ``fitted``: the
    live collection's fitted routing table (``niteru.route_table``), None before any fit."""
    try:
        return _similar(store, product_id, settings, options, estimate, fitted)
    except StoreSchemaError:
        # The alias moved between reading the product and searching: a rebuild swapped in a collection
        # whose text vectors have another size. Once more, now wholly in the new collection.
        return _similar(store, product_id, settings, options, estimate, fitted)


def _similar(
    store: ProductStore,
    product_id: str,
    settings: Settings,
    options: SimilarOptions,
    estimate: Estimator | None,
    fitted: RouteTable | None,
) -> SimilarResult:
    point = store.get(product_id, with_vectors=True)
    if point is None:
        raise UnknownProductError(product_id)
    product = point.product
    query = QueryProduct(point.vectors, product.category, product.shop_id, product.category_estimated, product.title)
    return _similar_to(store, query, product_id, (product_id,), settings, options, estimate, fitted)


@dataclass(frozen=True)
class QueryProduct:
    """What a similar-products query starts from: a product's vectors and the fields routing and the shop
    options read, and its title (the lexical term of a route that weighs one). A stored product's, or one
    that is not stored (``similar_to_vectors``)."""

    vectors: Mapping[str, np.ndarray]
    category: str = ""
    shop_id: str = ""
    category_estimated: bool = False
    title: str = ""


def similar_to_vectors(
    store: ProductStore,
    query: QueryProduct,
    settings: Settings,
    options: SimilarOptions,
    estimate: Estimator | None = None,
    fitted: RouteTable | None = None,
    *,
    label: str = "",
) -> SimilarResult:
    """The ``k`` nearest products to a product that is not stored (routed like a stored one): the look-alike
    measures query with a re-listed variant without inserting it. ``label`` names it in the result."""
    try:
        return _similar_to(store, query, label, (), settings, options, estimate, fitted)
    except StoreSchemaError:  # the alias moved between the caller's embedding and the search: see above
        return _similar_to(store, query, label, (), settings, options, estimate, fitted)


def _similar_to(
    store: ProductStore,
    product: QueryProduct,
    label: str,
    exclude: tuple[str, ...],
    settings: Settings,
    options: SimilarOptions,
    estimate: Estimator | None,
    fitted: RouteTable | None,
) -> SimilarResult:
    estimates: list[tuple[str, float]] = []
    estimated = product.category_estimated or options.estimate_category
    if options.mode is Mode.auto and estimated and estimate is not None:
        estimates = estimate(product.vectors.get("image"), product.vectors.get("text"))
    taken = route(
        options.mode,
        settings,
        category=product.category,
        category_estimated=estimated,
        estimates=estimates,
        fitted=fitted,
    )
    f = options.filter
    search_filter = replace(
        f,
        exclude_shop_id=product.shop_id if options.exclude_same_shop else f.exclude_shop_id,
        exclude_product_ids=(*exclude, *f.exclude_product_ids),
    )
    vectors = {n: v for n, v in product.vectors.items() if taken.weights.get(n, 0.0) > 0}
    if not vectors:  # mode=joint on a collection built before any joint model
        missing = ", ".join(n for n, w in taken.weights.items() if w > 0)
        raise Refusal(
            "no_vector",
            f"product {label!r} has no {missing} vector: the joint model is trained by the next rebuild",
            status=409,
        )
    # The request's fusion, else the fitted row's, else the setting's.
    fusion = options.fusion or taken.fusion or settings.fusion
    query = _Query(vectors, taken.weights, search_filter, fusion, options.diversity, product.title)
    hits, asked = _search_capped(store, query, options)
    result = SimilarResult(label, taken, query.fusion, hits)
    if options.explain:
        result.explanations = explain(store, query, asked, hits, settings.rrf_k)
    return result


@dataclass(frozen=True)
class _Query:
    """The store search a similar-products request makes (the same for its explanation)."""

    vectors: Mapping[str, np.ndarray]
    weights: Mapping[str, float]
    search_filter: SearchFilter
    fusion: Fusion
    diversity: float = 0.0
    title: str = ""

    def search(self, store: ProductStore, k: int, with_vectors: bool) -> list[Hit]:
        return store.search(
            self.vectors,
            self.weights,
            k,
            self.search_filter,
            self.fusion,
            with_vectors=with_vectors,
            diversity=self.diversity,
            title=self.title,
        )


def _search_capped(store: ProductStore, query: _Query, options: SimilarOptions) -> tuple[list[Hit], int]:
    """Search, keeping at most ``max_per_shop`` products of each shop: over-fetch, cap, and fetch more
    while the cap leaves fewer than k and the store has more to give. Returns the hits and the k asked."""
    k, cap = options.k, options.max_per_shop
    with_vectors = options.explain
    if cap is None:
        return query.search(store, k, with_vectors), k
    asked = min(SHOP_CAP_MAX_FETCH, k * SHOP_CAP_OVERFETCH)
    while True:
        found = query.search(store, asked, with_vectors)
        per_shop: dict[str, int] = {}
        kept: list[Hit] = []
        for hit in found:
            n = per_shop.get(hit.product.shop_id, 0)
            if n < cap:
                per_shop[hit.product.shop_id] = n + 1
                kept.append(hit)
        if len(kept) >= k or len(found) < asked or asked >= SHOP_CAP_MAX_FETCH:
            return kept[:k], asked
        asked = min(SHOP_CAP_MAX_FETCH, asked * 2)


def explain(store: ProductStore, query: _Query, k: int, hits: list[Hit], rrf_k: int) -> list[Explanation]:
    """The score breakdown of each hit (which must carry its vectors: search ``with_vectors``) under the
    fusion's rule (``niteru.fusion.RULES``), ranked against the candidate lists of a search for ``k``."""
    vectors, weights = query.vectors, query.weights
    names = list(vectors)
    cosines = [{n: float(np.dot(h.vectors[n], vectors[n])) for n in names if n in h.vectors} for h in hits]
    single = len(names) == 1
    ranks: dict[str, dict[str, int]] = {}
    scores: dict[str, list[float]] = {}
    if not single:
        lists = store.candidate_lists(vectors, k, query.search_filter)
        ranks = {n: {h.product.product_id: i for i, h in enumerate(hs)} for n, hs in lists.items()}
        scores = {n: [h.score for h in hs] for n, hs in lists.items()}
    total = sum(max(0.0, float(weights.get(n, 0.0))) for n in names)
    rule = RULES[query.fusion]
    lexical_weight = lexical_term(weights, query.fusion, lexical.query(query.title)) if query.title else 0.0
    out = []
    for hit, cos in zip(hits, cosines, strict=True):
        pid = hit.product.product_id
        where = {n: ranks.get(n, {}).get(pid) for n in names}
        contributions: dict[str, float] = {}
        for n in names:
            if single:  # one list: the score is the cosine, whatever the fusion
                contributions[n] = cos[n]
                continue
            w = max(0.0, float(weights.get(n, 0.0)))
            share = Share(w, total, cos[n], where[n], scores[n])
            contributions[n] = rule.contribution(share, rrf_k)
        if lexical_weight:
            # The lexical term is the rest of the fused score (a wsum is the sum of its terms); its score is the
            # hit's BM25, 0 for a title sharing no word (a collection without the lexical vector adds none).
            bonus = hit.score - sum(contributions.values())
            contributions[LEXICAL] = bonus if abs(bonus) > LEXICAL_NOISE else 0.0
            cos = {**cos, LEXICAL: contributions[LEXICAL] / lexical_weight}
        out.append(Explanation(cos, contributions, {n: None if r is None else r + 1 for n, r in where.items()}))
    return out
