"""What crosses the store interface: products with their vectors, filters, hits, errors.

Only niteru types and numpy arrays cross it. The engines' own records (qdrant-client's and Qdrant Edge's
points) have the same shape (``payload``, ``vector``, ``score``), so one conversion serves both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from niteru import lexical
from niteru.products import Product, point_id

# ``joint`` exists only once a rebuild trained the joint model: a collection holds the names it was created
# with (its dims), and a product of such a collection has each of them.
VECTOR_NAMES = ("image", "text", "joint")
# The sparse BM25 vector of the title (``niteru.lexical``) in collections created with ``lexical``: the store
# computes it from the payload at each write, so it never crosses the interface (a ``ProductPoint`` has none).
LEXICAL = lexical.VECTOR
# A point as the engines write it: id, named vectors (dense float lists; the lexical one as indices and
# values), payload.
Row = tuple[str, Mapping[str, list[float] | lexical.Sparse], dict[str, Any]]
# Payload indexes of every collection: the filters' keys, and product_id/image_version for the
# conditional writes.
PAYLOAD_INDEXES = {
    "category": "keyword",
    "subcategory": "keyword",
    "shop_id": "keyword",
    "product_id": "keyword",
    "image_version": "integer",
    "price": "float",
}


class StoreError(RuntimeError):
    """Base of store errors."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached (server down, embedded folder locked by another process)."""


class CollectionMovedError(StoreUnavailableError):
    """The alias moved to another collection while a write ran (another process's rebuild swapped it):
    the write is not acknowledged; retry it after refreshing the models (transient, like a store down)."""


class StoreSchemaError(StoreError):
    """The stored collection does not fit the models (a vector size changed): rebuild it."""


class UnknownCollectionError(StoreError, LookupError):
    """No versioned collection of that name (switch, pinned)."""


@dataclass
class ProductPoint:
    """A product with its vectors, one per name in ``VECTOR_NAMES`` (float32, L2-normalised)."""

    product: Product
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchFilter:
    """Restrictions on the results: equal-to filters and exclusions."""

    category: str | None = None
    subcategory: str | None = None
    shop_id: str | None = None
    exclude_shop_id: str | None = None
    exclude_product_ids: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None

    @property
    def only_excludes_ids(self) -> bool:
        return self == SearchFilter(exclude_product_ids=self.exclude_product_ids)


@dataclass(frozen=True)
class Hit:
    product: Product
    score: float
    # Filled when asked (``with_vectors``): the hit's stored vectors, for explaining its score.
    vectors: dict[str, np.ndarray] = field(default_factory=dict, compare=False)


@dataclass
class UpsertOutcome:
    """Which products were written, and which were refused because a newer image is stored."""

    written: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)


def named_vectors(vector: Any) -> dict[str, np.ndarray]:
    """A record's dense named vectors as float32 arrays ({} when it was read without vectors)."""
    if not isinstance(vector, dict):
        return {}
    return {n: np.asarray(v, np.float32) for n, v in vector.items() if n in VECTOR_NAMES}


def to_points(records: Sequence[Any]) -> list[ProductPoint]:
    return [ProductPoint(Product.model_validate(r.payload), named_vectors(r.vector)) for r in records if r.payload]


def to_hits(points: Sequence[Any]) -> list[Hit]:
    return [
        Hit(Product.model_validate(p.payload), float(p.score), named_vectors(p.vector)) for p in points if p.payload
    ]


def as_floats(vector: np.ndarray) -> list[float]:
    """A vector as the engines take it: float32 values in a list."""
    return np.asarray(vector, np.float32).tolist()  # type: ignore[no-any-return]


def to_row(p: ProductPoint, with_lexical: bool = False) -> Row:
    """The point as written; ``with_lexical``: with its title's BM25 vector (none for a title of which no
    token survives the tokenizer: such a product scores 0 for every query, as one without a shared word)."""
    vectors: dict[str, list[float] | lexical.Sparse] = {n: as_floats(v) for n, v in p.vectors.items()}
    if with_lexical and (doc := lexical.document(p.product.title))[0]:
        vectors[LEXICAL] = doc
    return point_id(p.product.product_id), vectors, p.product.model_dump(mode="json")
