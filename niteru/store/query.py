"""Similar products of a stored product, by mode: which vectors to ask and with which weights.

``mode=auto`` is a simple rule on the stored category here (the ``route_weights`` settings table:
fashion looks, the rest reads); issue 5 replaces it with the full routed fusion policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from niteru.settings import Settings
from niteru.store.base import Hit, ProductStore, SearchFilter


class Mode(StrEnum):
    auto = "auto"
    image = "image"
    text = "text"
    hybrid = "hybrid"


class UnknownProductError(LookupError):
    def __init__(self, product_id: str) -> None:
        super().__init__(f"no product with id {product_id!r}")
        self.product_id = product_id


def mode_weights(mode: Mode, category: str, settings: Settings) -> dict[str, float]:
    """Weights of the image and text vectors for a query product of ``category``."""
    if mode is Mode.image:
        return {"image": 1.0, "text": 0.0}
    if mode is Mode.text:
        return {"image": 0.0, "text": 1.0}
    if mode is Mode.hybrid:
        return {"image": 1.0, "text": 1.0}
    table = settings.route_weights
    row = table.get(category) or table.get("*") or {"image": 1.0, "text": 1.0}
    return {"image": float(row.get("image", 0.0)), "text": float(row.get("text", 0.0))}


@dataclass
class SimilarResult:
    product_id: str
    mode: Mode
    weights: dict[str, float]
    hits: list[Hit]


def similar_products(
    store: ProductStore,
    product_id: str,
    *,
    k: int,
    mode: Mode,
    settings: Settings,
    category: str | None = None,
    exclude_same_shop: bool = False,
) -> SimilarResult:
    """The ``k`` nearest other products; the query product itself is never among them."""
    point = store.get(product_id, with_vectors=True)
    if point is None:
        raise UnknownProductError(product_id)
    product = point.product
    weights = mode_weights(mode, product.category, settings)
    search_filter = SearchFilter(
        category=category,
        exclude_shop_id=product.shop_id if exclude_same_shop else None,
        exclude_product_ids=(product_id,),
    )
    hits = store.search(point.vectors, weights, k, search_filter)
    return SimilarResult(product_id, mode, weights, hits)
