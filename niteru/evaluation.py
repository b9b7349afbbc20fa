"""Relevance of a collection on a fixed sample of its products: the label measure and the look-alike ones.

For each product of the sample (``fixed_sample``), through the service's own code paths:

- ``similar_products`` of the stored product (leave-one-out): precision@10 (share of results in its
  subcategory) and the attribute consistency of the results in its subcategory: the share that name one
  of its colours (``niteru.lookalike.colours``), and the share of its brand, when its brand is known;
- a re-listed variant (``niteru.lookalike``: re-shot photo, re-written title, another shop), embedded by
  ``embed_products`` as a registered product would be and searched by ``similar_to_vectors`` without
  being stored: variant recall@1 and @10 = the original is the first / among the first ten results.

``evaluate`` returns one ``QueryOutcome`` per product; ``summarise`` pools them per category and overall.
The rebuild's gate (``niteru.gate``) and ``bench/relevance.py`` both use these functions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from niteru.categorize import Estimator
from niteru.embedders import Embedders, ProductInput, embed_products, reembed_text
from niteru.lookalike import brand_of, colours, variant_fields, variant_image
from niteru.products import Product, ProductFields
from niteru.refusals import Refusal
from niteru.route_table import RouteTable
from niteru.routing import Mode
from niteru.settings import Settings
from niteru.similar import QueryProduct, SimilarOptions, UnknownProductError, similar_products, similar_to_vectors
from niteru.store import ProductPoint, ProductStore

K = 10
# Each category gets at least this many products of the sample (or all it has), so a small category is
# measured at all; the rest is shared in proportion to the categories' sizes.
MIN_PER_CATEGORY = 10
MEASURES = ("p10", "variant_r1", "variant_r10", "colour", "brand")


@dataclass(frozen=True)
class Variant:
    """A sample product and its re-listed variant (the variant's image bytes, ready to embed)."""

    original: Product
    fields: ProductFields
    image: bytes


@dataclass
class QueryOutcome:
    product_id: str
    category: str
    p10: float
    variant_rank: int | None  # 1-based rank of the original among the variant's K results; None: not found
    colour_kept: int  # results in the subcategory that name one of the query's colours
    colour_total: int  # results in the subcategory, when the query names a colour (else 0)
    brand_kept: int
    brand_total: int  # results in the subcategory, when the query's brand is known (else 0)
    relevant: list[bool] = field(default_factory=list)  # each result in the subcategory? (for nDCG)
    weights: dict[str, float] = field(default_factory=dict)  # the route's weights of the stored product's query


def samplable(product: Product) -> bool:
    """A product the sample may hold: a category and subcategory the shop gave. (Its variant's photo is
    made from the catalog file or from the kept copy of an upload or URL, ``niteru.photos``; a product
    with neither is skipped by ``make_variants``.)"""
    return bool(product.category and product.subcategory) and not product.category_estimated


def fixed_sample(products: Iterable[Product], n: int, seed: int) -> list[Product]:
    """About ``n`` samplable products, stratified by category, the same for the same products and seed."""
    by_cat: dict[str, list[Product]] = defaultdict(list)
    for p in sorted((p for p in products if samplable(p)), key=lambda p: p.product_id):
        by_cat[p.category].append(p)
    total = sum(len(g) for g in by_cat.values())
    rng = np.random.default_rng(seed)
    out: list[Product] = []
    for cat in sorted(by_cat):
        group = by_cat[cat]
        share = max(min(MIN_PER_CATEGORY, len(group)), round(n * len(group) / max(1, total)))
        out += [group[i] for i in sorted(rng.permutation(len(group))[: min(share, len(group))])]
    return out


def make_variants(sample: Sequence[Product], read_image: Callable[[str], bytes], seed: int) -> list[Variant]:
    """The variant of each sample product whose image can be read: ``read_image`` (image ref -> bytes, e.g.
    ``niteru.photos.read_photo``) raises ``Refusal`` when it cannot."""
    out = []
    for p in sample:
        try:
            image = variant_image(p.product_id, read_image(p.image), seed)
        except (Refusal, OSError):  # gone from the catalog folder, or not an image PIL reads: skip it
            continue
        out.append(Variant(p, variant_fields(p.product_id, ProductFields.taken_from(p), seed), image))
    return out


def embed_variants(variants: Sequence[Variant], embedders: Embedders) -> dict[str, ProductPoint]:
    """Each variant embedded as a registered product would be, by its original's id (refused ones left out)."""
    items = [ProductInput(v.original.product_id, v.fields, v.image, "variant", 0) for v in variants]
    return {p.product.product_id: p for p in embed_products(items, embedders) if isinstance(p, ProductPoint)}


def variant_embedder(
    settings: Settings, embedders: Callable[[], Embedders]
) -> Callable[[Sequence[Product], int], dict[str, ProductPoint]]:
    """The routing fit's variants (``route_grid.fit_inputs``' callback): the products re-listed with a seed,
    their photos read from the catalog or the kept copies (``niteru.photos.read_photo``), embedded by
    ``embedders()`` (called when the first variants are made: the image model loads only then)."""
    from niteru.photos import read_photo

    def embed(products: Sequence[Product], seed: int) -> dict[str, ProductPoint]:
        return embed_variants(make_variants(products, lambda ref: read_photo(ref, settings), seed), embedders())

    return embed


def reembed_variants(embedded: dict[str, ProductPoint], embedders: Embedders) -> dict[str, ProductPoint]:
    """The same variants under another text model, as the write path updates a stored product's text
    (``reembed_text``: the image vector kept): the gate's second side without embedding every photo again."""
    out = {}
    for pid, point in embedded.items():
        again = reembed_text(point, ProductFields.taken_from(point.product), embedders)
        if isinstance(again, ProductPoint):
            out[pid] = again
        elif again is None:  # the same text model: nothing to re-embed
            out[pid] = point
    return out


def evaluate(
    store: ProductStore,
    settings: Settings,
    variants: Sequence[Variant],
    embedded: dict[str, ProductPoint],
    mode: Mode = Mode.auto,
    *,
    options: SimilarOptions | None = None,
    estimate: Estimator | None = None,
    fitted: RouteTable | None = None,
) -> list[QueryOutcome]:
    """The measures of each variant's original in ``store`` (which must hold it), in ``mode`` (or with
    ``options``, k = ``K``; ``estimate``: the category classifier, for routes by an estimated category;
    ``fitted``: the routing table fitted on ``store``'s collection, None: the default table).
    ``embedded``: ``embed_variants`` with the text model of ``store``'s collection."""
    options = replace(options or SimilarOptions(mode=mode), k=K)
    out = []
    for v in variants:
        q = v.original
        if (point := embedded.get(q.product_id)) is None:
            continue
        try:
            result = similar_products(store, q.product_id, settings, options, estimate, fitted)
        except UnknownProductError:  # deleted since the sample was taken (writes go on meanwhile)
            continue
        query = QueryProduct(point.vectors, v.fields.category, v.fields.shop_id, title=v.fields.title)
        answer = similar_to_vectors(store, query, settings, options, estimate, fitted)
        found = [h.product.product_id for h in answer.hits]
        out.append(outcome(q, [h.product for h in result.hits], found, result.route.weights))
    return out


def outcome(
    q: Product, results: Sequence[Product], variant_found: Sequence[str], weights: dict[str, float]
) -> QueryOutcome:
    """The measures of one query ``q`` from its results (best first) and the ids its variant found."""
    relevant = [p.subcategory == q.subcategory for p in results]
    same = [p for p, r in zip(results, relevant, strict=True) if r]
    wanted, brand = colours(q.title), brand_of(q.shop_id, q.title)
    return QueryOutcome(
        q.product_id,
        q.category,
        p10=len(same) / K,
        variant_rank=list(variant_found).index(q.product_id) + 1 if q.product_id in variant_found else None,
        colour_kept=sum(bool(wanted & colours(p.title)) for p in same) if wanted else 0,
        colour_total=len(same) if wanted else 0,
        brand_kept=sum(brand_of(p.shop_id, p.title) == brand for p in same) if brand else 0,
        brand_total=len(same) if brand else 0,
        relevant=relevant,
        weights=weights,
    )


@dataclass(frozen=True)
class Measures:
    """Pooled measures of some queries; None where no query had anything to measure (no colour named...)."""

    queries: int
    p10: float | None
    variant_r1: float | None
    variant_r10: float | None
    colour: float | None  # kept / total over the queries naming a colour
    brand: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def measures(outcomes: Sequence[QueryOutcome]) -> Measures:
    n = len(outcomes)

    def ratio(kept: float, total: int) -> float | None:
        return kept / total if total else None

    return Measures(
        queries=n,
        p10=ratio(sum(o.p10 for o in outcomes), n),
        variant_r1=ratio(sum(o.variant_rank == 1 for o in outcomes), n),
        variant_r10=ratio(sum(o.variant_rank is not None for o in outcomes), n),
        colour=ratio(sum(o.colour_kept for o in outcomes), sum(o.colour_total for o in outcomes)),
        brand=ratio(sum(o.brand_kept for o in outcomes), sum(o.brand_total for o in outcomes)),
    )


def summarise(outcomes: Sequence[QueryOutcome]) -> dict[str, Measures]:
    """``all`` and one entry per category."""
    by_cat: dict[str, list[QueryOutcome]] = defaultdict(list)
    for o in outcomes:
        by_cat[o.category].append(o)
    return {"all": measures(outcomes), **{c: measures(by_cat[c]) for c in sorted(by_cat)}}
