"""The product listing behind ``GET /v1/products`` (the web page's grid): a cached summary of the store.

The store has no "list by category" call, and scrolling the payloads of the whole catalog for every page
would make the grid's cost grow with the catalog, so the summaries (id, title, category, shop, image) are
kept in memory and read again when older than ``TTL`` seconds or after a write through this process.
Another process's writes (a worker, a second API replica) show up within the TTL.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

from api.schemas import ProductSummary
from niteru.products import point_id
from niteru.store import ProductStore

TTL = 60.0


@dataclass(frozen=True)
class Listing:
    total: int
    categories: dict[str, int]
    items: list[ProductSummary]


class ListingCache:
    """The product summaries of the store, in the listing's order, read again when stale or invalidated."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._summaries: list[ProductSummary] | None = None
        self._loaded_at = 0.0

    def invalidate(self) -> None:
        with self._lock:
            self._summaries = None

    def _all(self, store: ProductStore) -> list[ProductSummary]:
        with self._lock:  # one reload at a time; the others wait for it rather than scan too
            if self._summaries is None or time.monotonic() - self._loaded_at > TTL:
                rows = [
                    ProductSummary(
                        product_id=p.product_id,
                        title=p.title,
                        category=p.category,
                        subcategory=p.subcategory,
                        shop_id=p.shop_id,
                        price=p.price,
                        image=p.image,
                    )
                    for batch in store.scroll(batch_size=1024, with_vectors=False)
                    for p in (point.product for point in batch)
                ]
                # A stable order that mixes shops and sources (ids sort by source prefix): the point id, a
                # hash of the product id. The page's "more" button pages through the same sequence.
                rows.sort(key=lambda s: point_id(s.product_id))
                self._summaries, self._loaded_at = rows, time.monotonic()
            return self._summaries

    def page(self, store: ProductStore, category: str | None, offset: int, limit: int) -> Listing:
        rows = self._all(store)
        categories = dict(sorted(Counter(s.category for s in rows).items()))
        chosen = [s for s in rows if s.category == category] if category else rows
        return Listing(len(chosen), categories, chosen[offset : offset + limit])
