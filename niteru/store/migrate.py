"""Copy the live collection from one store to another (Edge to a Qdrant server and back) without
re-embedding: every product with its stored vectors goes into a new versioned collection of the target,
which is indexed, checked (same count) and then made current there. The source is only read.

    niteru store migrate --to qdrant --to-url http://qdrant:6333     # outgrew one machine
    niteru store migrate --to edge --to-path data/edge               # back to the embedded engine
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from niteru.store.base import ProductStore
from niteru.store.records import StoreError

log = logging.getLogger(__name__)


class MigrationError(StoreError):
    pass


@dataclass
class MigrationReport:
    source: str
    target: str
    products: int
    seconds: float
    switched: bool


def migrate(source: ProductStore, target: ProductStore, batch_size: int = 256, switch: bool = True) -> MigrationReport:
    """Copy ``source``'s live collection into a new collection of ``target``; with ``switch``, point
    ``target``'s alias at it (its previous collection stays, for a rollback)."""
    t0 = time.perf_counter()
    origin = source.current_version()
    first = next(source.scroll(batch_size=1, with_vectors=True), [])
    if not first:
        raise MigrationError(f"{origin} holds no products: nothing to migrate")
    dims = {name: len(vector) for name, vector in first[0].vectors.items()}
    new = target.create_version(dims)
    view = target.pinned(new)
    copied = 0
    try:
        for batch in source.scroll(batch_size=batch_size, with_vectors=True):
            outcome = view.upsert(batch)
            if outcome.stale:  # a fresh collection has nothing newer: this would be a bug, not a race
                raise MigrationError(f"products refused by the new collection: {outcome.stale[:5]}")
            copied += len(outcome.written)
            log.info("migrate: %d products copied", copied)
        if view.count() != source.count():
            raise MigrationError(f"copied {view.count()} products but the source holds {source.count()}")
        view.build_index(wait=True)
    except Exception:
        target.drop(new)
        raise
    if switch:
        target.switch(new)
    return MigrationReport(origin, new, copied, time.perf_counter() - t0, switch)
