"""The store interface: what the API, the ingest and the jobs call.

Only niteru types and numpy arrays cross it, so two engines sit behind the same calls: Qdrant Edge
in-process (``edge.py``) and qdrant-client (``qdrant.py``); ``tests/test_store.py`` runs on both.
Vectors are named: ``image`` and ``text`` (``VECTOR_NAMES``).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from niteru.fusion import Fusion as Fusion
from niteru.products import Product

VECTOR_NAMES = ("image", "text")


class StoreError(RuntimeError):
    """Base of store errors."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached (server down, embedded folder locked by another process)."""


class StoreSchemaError(StoreError):
    """The stored collection does not fit the models (a vector size changed): rebuild it."""


class UnknownCollectionError(StoreError, LookupError):
    """No versioned collection of that name (switch, pinned)."""


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


def newest_per_product(points: Sequence[ProductPoint]) -> dict[str, ProductPoint]:
    """A product twice in one batch: its newest image wins (the later one on a tie)."""
    latest: dict[str, ProductPoint] = {}
    for p in points:
        seen = latest.get(p.product.product_id)
        if seen is None or p.product.image_version >= seen.product.image_version:
            latest[p.product.product_id] = p
    return latest


def conditional_upsert(
    latest: Mapping[str, ProductPoint],
    stored_versions: Callable[[list[str]], dict[str, int]],
    write: Callable[[Sequence[ProductPoint], int], None],
) -> UpsertOutcome:
    """The write both engines do: never replace a stored image_version by an older one.

    ``write(points, floor)`` upserts, replacing a stored point only while its image_version <= floor (a
    condition the engine checks itself, so a concurrent newer write wins). One call for the common case at
    the batch's lowest version; products whose stored version lies between that and their own get a call
    each, with their own version as the condition. Read back: another writer may have won a race.
    """
    before = stored_versions(list(latest))
    fresh = [p for pid, p in latest.items() if before.get(pid, -1) <= p.product.image_version]
    if fresh:
        floor = min(p.product.image_version for p in fresh)
        bulk = [p for p in fresh if before.get(p.product.product_id, -1) <= floor]
        if bulk:
            write(bulk, floor)
        for p in fresh:
            if before.get(p.product.product_id, -1) > floor:
                write([p], p.product.image_version)
    after = stored_versions(list(latest))
    outcome = UpsertOutcome()
    for pid, p in latest.items():
        (outcome.written if after.get(pid) == p.product.image_version else outcome.stale).append(pid)
    return outcome


class ProductStore(ABC):
    """One collection of products with named vectors, reached by product id."""

    @abstractmethod
    def ensure_collection(self, dims: Mapping[str, int]) -> None:
        """Create the collection (and whatever points at it) if missing; check the sizes if present."""

    @abstractmethod
    def upsert(self, points: Sequence[ProductPoint]) -> UpsertOutcome:
        """Idempotent write; a point whose stored ``image_version`` is newer is left alone (stale)."""

    @abstractmethod
    def get(self, product_id: str, with_vectors: bool = False) -> ProductPoint | None: ...

    @abstractmethod
    def content_hashes(self, product_ids: Sequence[str]) -> dict[str, str]:
        """``content_hash`` of those of the products that are stored (for resumable ingest)."""

    @abstractmethod
    def delete(self, product_id: str) -> bool:
        """True when the product existed."""

    @abstractmethod
    def search(
        self,
        vectors: Mapping[str, np.ndarray],
        weights: Mapping[str, float],
        k: int,
        search_filter: SearchFilter | None = None,
        fusion: Fusion = Fusion.wsum,
        *,
        candidates: int | None = None,
        with_vectors: bool = False,
    ) -> list[Hit]:
        """Nearest products. One vector: cosine similarity to it. Several: each vector's candidate list
        (``candidates`` long, default a few times ``k``) fused by ``fusion`` with ``weights``; a vector of
        weight 0 still brings candidates under ``wsum`` but adds nothing to their scores."""

    @abstractmethod
    def candidate_lists(
        self,
        vectors: Mapping[str, np.ndarray],
        k: int,
        search_filter: SearchFilter | None = None,
        *,
        candidates: int | None = None,
    ) -> dict[str, list[Hit]]:
        """The per-vector candidate lists, best first, exactly as a ``search`` for ``k`` with the same
        filter fuses them (excluded ids may still be in them): what ``explain`` ranks against."""

    @abstractmethod
    def scroll(self, batch_size: int = 256, with_vectors: bool = True) -> Iterator[list[ProductPoint]]:
        """Every stored product, in batches, in a stable order."""

    @abstractmethod
    def count(self) -> int: ...

    # --- versioned collections (the rebuild) ----------------------------------------------------------
    @abstractmethod
    def current_version(self) -> str:
        """The collection the alias points at."""

    @abstractmethod
    def versions(self) -> list[str]:
        """This alias's versioned collections, oldest first."""

    @abstractmethod
    def create_version(self, dims: Mapping[str, int]) -> str:
        """A new, empty versioned collection (the alias does not move)."""

    @abstractmethod
    def pinned(self, version: str) -> ProductStore:
        """The same store reading and writing ``version`` instead of the alias (closing it closes nothing)."""

    def exclusive(self) -> contextlib.AbstractContextManager[object]:
        """Hold off this process's other calls on the store (the rebuild's last catch-up and swap).
        A store whose calls are not serialised has nothing to hold: a no-op."""
        return contextlib.nullcontext()

    @abstractmethod
    def switch(self, version: str) -> None:
        """Point the alias at ``version`` in one atomic operation."""

    @abstractmethod
    def drop(self, version: str) -> None:
        """Delete a versioned collection (never the current one)."""

    def build_index(self, wait: bool = True) -> bool:
        """Index what a bulk load wrote, off the request path (queries are served meanwhile); ``wait``
        returns once the index serves. True when a build started. Engines that index continuously in
        the background (a Qdrant server) or never (qdrant-client's local mode) have nothing to do."""
        return False

    @abstractmethod
    def ping(self) -> None:
        """Raise ``StoreUnavailableError`` unless the store answers."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Facts for /readyz and the benchmark (engine, collection, points, disk bytes)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> ProductStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
