"""The product store: an interface (``ProductStore``) and two engines behind it.

``open_store(settings)`` picks the engine from the settings: a Qdrant server through qdrant-client when
``qdrant_url`` is set; else ``store_engine``: ``edge`` (Qdrant Edge in-process, the default) or
``qdrant`` (qdrant-client's local mode). Importing this package builds no client.
"""

from __future__ import annotations

from niteru.fusion import Fusion
from niteru.settings import Settings
from niteru.store.base import ProductStore
from niteru.store.records import (
    VECTOR_NAMES,
    CollectionMovedError,
    Hit,
    ProductPoint,
    SearchFilter,
    StoreError,
    StoreSchemaError,
    StoreUnavailableError,
    UnknownCollectionError,
    UpsertOutcome,
)


def open_store(settings: Settings) -> ProductStore:
    """Connect to the configured store (embedded: takes the folder's lock until ``close()``)."""
    if settings.qdrant_url is None and settings.store_engine == "edge":
        from niteru.store.edge import EdgeProductStore

        return EdgeProductStore(settings)
    from niteru.store.qdrant import QdrantProductStore

    return QdrantProductStore(settings)


__all__ = [
    "VECTOR_NAMES",
    "CollectionMovedError",
    "Fusion",
    "Hit",
    "ProductPoint",
    "ProductStore",
    "SearchFilter",
    "StoreError",
    "StoreSchemaError",
    "StoreUnavailableError",
    "UnknownCollectionError",
    "UpsertOutcome",
    "open_store",
]
