"""The product store: an interface (``ProductStore``) and its Qdrant implementation.

``open_store(settings)`` picks the deployment from the settings: a Qdrant server when ``qdrant_url`` is
set, else the embedded store on disk. Importing this package builds no client.
"""

from __future__ import annotations

from niteru.settings import Settings
from niteru.store.base import (
    VECTOR_NAMES,
    Fusion,
    Hit,
    ProductPoint,
    ProductStore,
    SearchFilter,
    StoreError,
    StoreSchemaError,
    StoreUnavailableError,
    UpsertOutcome,
)


def open_store(settings: Settings) -> ProductStore:
    """Connect to the configured store (embedded: takes the folder's lock until ``close()``)."""
    from niteru.store.qdrant import QdrantProductStore

    return QdrantProductStore(settings)


__all__ = [
    "VECTOR_NAMES",
    "Fusion",
    "Hit",
    "ProductPoint",
    "ProductStore",
    "SearchFilter",
    "StoreError",
    "StoreSchemaError",
    "StoreUnavailableError",
    "UpsertOutcome",
    "open_store",
]
