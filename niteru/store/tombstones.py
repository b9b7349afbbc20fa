"""Delete tombstones: a deleted product leaves the delete's version behind, so an older write still in
flight (a redelivered task, a worker that was slow) is refused as stale instead of bringing it back.

They live in a collection of their own beside the versioned ones (``<alias>_tombstones``: not a version,
so never listed, copied by a rebuild or dropped), keyed by the product's point id, payload
``{product_id, image_version: the delete's version, expires_at}``. Reads never look at it: get, search,
listing, count and scroll cannot show a tombstone. A tombstone of version d refuses writes of a version
<= d (the delete wins a tie) until it expires (``tombstone_ttl``); expired ones are purged now and then.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from niteru.products import point_id
from niteru.store.plan import Between, Conditions, HasId, version_at_most
from niteru.store.primitives import EnginePrimitives

# The tombstone collection's vectors: the engines want every named vector; one constant is enough.
DIMS = {"image": 1, "text": 1}
ONE = {"image": [1.0], "text": [1.0]}
PURGE_EVERY_S = 60.0


class Tombstones:
    def __init__(self, engine: EnginePrimitives, alias: str, ttl: float) -> None:
        self.engine = engine
        self.name = f"{alias}_tombstones"
        self.ttl = ttl
        self._exists = False
        self._purged = 0.0

    def _ready(self) -> bool:
        if not self._exists:
            self._exists = self.name in self.engine._collections()
        return self._exists

    def versions(self, product_ids: Sequence[str]) -> dict[str, int]:
        """The unexpired tombstones' delete versions, by product id."""
        if not product_ids or not self._ready():
            return {}
        now = time.time()
        found = self.engine._retrieve(self.name, [point_id(p) for p in product_ids], True, False)
        return {
            r.payload["product_id"]: int(r.payload["image_version"])
            for r in found
            if r.payload and float(r.payload.get("expires_at", 0)) > now
        }

    def record(self, product_id: str, version: int) -> None:
        """Leave a tombstone of ``version`` (a newer one already there stays); the caller holds the lock."""
        if not self._ready():
            self.engine._create_collection(self.name, DIMS, quantized=False)
            self._exists = True
        payload: dict[str, Any] = {
            "product_id": product_id,
            "image_version": version,
            "expires_at": time.time() + self.ttl,
        }
        self.engine._write(self.name, [(point_id(product_id), ONE, payload)], version_at_most(version))
        self._purge()

    def _purge(self) -> None:
        now = time.time()
        if now - self._purged < PURGE_EVERY_S:
            return
        self._purged = now
        self.engine._delete(self.name, Conditions(must=(Between("expires_at", lte=now),)))


def at_most(product_id: str, version: int) -> Conditions:
    """The product's point, while its image_version <= ``version`` (a delete never removes a newer write)."""
    return Conditions(must=(HasId((point_id(product_id),)), Between("image_version", lte=version)))


def merged(stored: dict[str, int], tombstones: dict[str, int]) -> dict[str, int]:
    """Stored versions as the conditional upsert compares them: a tombstone of d counts as d + 1, so a write
    of a version <= d is stale."""
    out = dict(stored)
    for pid, d in tombstones.items():
        out[pid] = max(out.get(pid, -1), d + 1)
    return out
