"""The store: what the API, the ingest and the jobs call, written once over a few engine primitives.

Two engines sit behind it: Qdrant Edge in-process (``edge.py``) and qdrant-client (``qdrant.py``); each
implements only the primitives of ``primitives.py`` (retrieve, query a batch of plans, scroll a page, count, write
under a condition, delete, create/alias/drop a collection, vector sizes). Searches are planned once
(``plan.py``) and the engines translate the plan; ``tests/test_store.py`` runs every test on both.
Vectors are named: ``image``, ``text`` and, once a rebuild trained its model, ``joint`` (``VECTOR_NAMES``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Self

import numpy as np

from niteru import lexical
from niteru.fusion import Fusion as Fusion
from niteru.products import point_id
from niteru.settings import Settings
from niteru.store.plan import check_query, plan_candidates, plan_search, version_at_most
from niteru.store.primitives import EnginePrimitives
from niteru.store.records import LEXICAL, to_hits, to_points, to_row

# The value types are re-exported here: callers import them from ``niteru.store`` or from this module.
from niteru.store.records import VECTOR_NAMES as VECTOR_NAMES
from niteru.store.records import CollectionMovedError as CollectionMovedError
from niteru.store.records import Hit as Hit
from niteru.store.records import ProductPoint as ProductPoint
from niteru.store.records import SearchFilter as SearchFilter
from niteru.store.records import StoreError as StoreError
from niteru.store.records import StoreSchemaError as StoreSchemaError
from niteru.store.records import StoreUnavailableError as StoreUnavailableError
from niteru.store.records import UnknownCollectionError as UnknownCollectionError
from niteru.store.records import UpsertOutcome as UpsertOutcome
from niteru.store.tombstones import Tombstones, at_most, merged
from niteru.store.upsert import conditional_upsert, newest_per_product

log = logging.getLogger(__name__)


class ProductStore(EnginePrimitives):
    """One collection of products with named vectors, reached by product id through an alias.

    ``lock`` serialises this process's writes, alias switches and (where an engine needs it) all calls.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.alias = settings.store_alias
        self._pinned: str | None = None  # a view of one versioned collection (``pinned``)
        self.tombstones = Tombstones(self, self.alias, settings.tombstone_ttl)  # shared with pinned views

    # --- collection and alias ------------------------------------------------------------------------
    @property
    def collection(self) -> str:
        """The versioned collection this store reads and writes (raises when there is none yet)."""
        name = self._pinned or self._alias_target(refresh=False)
        if name is None:
            raise StoreUnavailableError(f"the store has no '{self.alias}' collection yet: run `niteru ingest`")
        return name

    def current_version(self) -> str:
        """The collection the alias points at."""
        if self._pinned is None:
            self._alias_target(refresh=True)
        return self.collection

    def versions(self) -> list[str]:
        """This alias's versioned collections, oldest first."""
        return sorted(n for n in self._collections() if n.startswith(f"{self.alias}-"))

    def _known(self, version: str) -> str:
        if version not in self.versions():
            raise UnknownCollectionError(f"no collection {version!r}")
        return version

    def create_version(self, dims: Mapping[str, int]) -> str:
        """A new, empty versioned collection (the alias does not move)."""
        name = f"{self.alias}-{datetime.now(UTC):%Y%m%dt%H%M%S%f}"
        with self.lock:
            self._create_collection(name, dims, lexical=self.settings.lexical)
        return name

    def pinned(self, version: str) -> Self:
        """The same store reading and writing ``version`` instead of the alias (closing it closes nothing)."""
        view = copy.copy(self)  # shallow: the same client or shards, and the same lock
        view._pinned = self._known(version)
        return view

    def exclusive(self) -> contextlib.AbstractContextManager[Any]:
        """Hold off this process's writes and swaps (the rebuild's last catch-up and swap)."""
        return self.lock

    def switch(self, version: str) -> None:
        """Point the alias at ``version`` in one atomic operation."""
        with self.lock:
            self._point_alias(self._known(version))

    def drop(self, version: str) -> None:
        """Delete a versioned collection (never the current one)."""
        if self._alias_target(refresh=True) == version:
            raise ValueError(f"{version} is the current collection; switch away from it first")
        self._drop_collection(version)

    def ensure_collection(self, dims: Mapping[str, int]) -> None:
        """Create the collection (and the alias pointing at it) if missing; check the sizes if present."""
        with self.lock:
            current = self._alias_target(refresh=True)
            if current is not None:
                stored = self._dims(current)
                if stored != dict(dims):
                    raise StoreSchemaError(
                        f"collection {current} has vectors {stored} but the models make {dict(dims)}: "
                        + self.rebuild_hint.format(path=self.settings.store_path)
                    )
                return
            name = self.create_version(dims)
            self._point_alias(name)
            log.info("created collection %s behind alias %s (%s)", name, self.alias, dict(dims))

    # --- writes ----------------------------------------------------------------------------------------
    # Every write ends by reading the alias again. When it moved meanwhile (a rebuild's swap, by another
    # process: in this one the lock holds swaps off), the write went to a collection that no longer serves:
    # a delete is made again in the live one; an upsert is not acknowledged (``CollectionMovedError``, a
    # transient error) because its text vector may be of the model the live collection left: its caller
    # refreshes its models and retries. With the rebuild's re-sync of the old collection after its swap
    # (``niteru.rebuild``), every acknowledged write reaches the live collection, whichever process made it.
    def upsert(self, points: Sequence[ProductPoint]) -> UpsertOutcome:
        """Idempotent write; a point whose stored ``image_version`` is newer is left alone (stale)."""
        latest = newest_per_product(points)
        if not latest:
            return UpsertOutcome()
        version, outcome = self._upsert_into(latest)
        moved = self._moved_from(version)
        if moved is not None:
            raise CollectionMovedError(
                f"the live collection changed from {version} to {moved} during this write (a rebuild's swap); "
                "nothing was acknowledged: retry"
            )
        return outcome

    def _moved_from(self, version: str) -> str | None:
        """The live collection when the alias no longer points at ``version`` (a pinned view: never)."""
        if self._pinned is not None:
            return None
        live = self._alias_target(refresh=True)
        return live if live is not None and live != version else None

    def _upsert_into(self, latest: dict[str, ProductPoint]) -> tuple[str, UpsertOutcome]:
        with self.lock:  # this process cannot move the alias meanwhile
            version = self.collection
            for p in latest.values():
                check_query(p.vectors, self._dims(version))

            def stored(product_ids: list[str]) -> dict[str, int]:
                found = self._fields(version, product_ids, "image_version")
                points = {p: int(f["image_version"]) for p, f in found.items()}
                return merged(points, self.tombstones.versions(product_ids))

            lexical = self._has_lexical(version)

            def write(chosen: Sequence[ProductPoint], floor: int) -> None:
                self._write(version, [to_row(p, lexical) for p in chosen], version_at_most(floor))

            outcome = conditional_upsert(latest, stored, write)
            # A delete that came between this write's read and its write: remove what it put back.
            for pid, d in self.tombstones.versions(outcome.stale).items():
                self._delete(version, at_most(pid, d))
        self._wrote(version, len(outcome.written))
        return version, outcome

    def delete(self, product_id: str, version: int | None = None) -> bool:
        """True when the product existed (not newer than ``version``). With ``version``: a tombstone
        refuses older writes in flight (``tombstones.py``), a newer stored image is kept. Without: no
        tombstone, the point goes (a rebuild copying a delete that already left one)."""
        if version is not None:
            with self.lock:
                self.tombstones.record(product_id, version)
        collection, found = self._delete_from(None, product_id, version)
        while (moved := self._moved_from(collection)) is not None:
            collection, again = self._delete_from(moved, product_id, version)
            found = found or again
        return found

    def _delete_from(self, collection: str | None, product_id: str, version: int | None) -> tuple[str, bool]:
        with self.lock:
            collection = collection or self.collection
            found = self._fields(collection, [product_id], "image_version")
            if product_id not in found:
                return collection, False
            newest = int(found[product_id]["image_version"]) if version is None else version
            self._delete(collection, at_most(product_id, newest))
            return collection, int(found[product_id]["image_version"]) <= newest

    # --- reads -----------------------------------------------------------------------------------------
    def get(self, product_id: str, with_vectors: bool = False) -> ProductPoint | None:
        found = to_points(self._retrieve(self.collection, [point_id(product_id)], True, with_vectors))
        return found[0] if found else None

    def content_hashes(self, product_ids: Sequence[str]) -> dict[str, str]:
        """``content_hash`` of those of the products that are stored (for resumable ingest)."""
        if not product_ids:
            return {}
        return {p: f["content_hash"] for p, f in self._fields(self.collection, product_ids, "content_hash").items()}

    def _fields(self, version: str, product_ids: Sequence[str], key: str) -> dict[str, dict[str, Any]]:
        """The payload field ``key`` of those of the products that are stored, by product id."""
        found = self._retrieve(version, [point_id(p) for p in product_ids], ["product_id", key], False)
        return {r.payload["product_id"]: r.payload for r in found if r.payload}

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
        exact: bool = False,
        diversity: float = 0.0,
        title: str | None = None,
    ) -> list[Hit]:
        """Nearest products. One vector: cosine similarity to it. Several: each vector's candidate list
        (``candidates`` long, default a few times ``k``) fused by ``fusion`` with ``weights``; a vector of
        weight 0 still brings candidates under ``wsum`` but adds nothing to their scores. ``exact`` scans
        every point instead of an approximate index (benchmarks). ``diversity`` in [0, 1] (0: off): maximal
        marginal relevance over a few times ``k`` candidates (``plan.Mmr``); hits keep their scores.
        ``title``: the query's title; with a ``LEXICAL`` weight under ``wsum``, in a collection that has the
        lexical vector, each candidate gains that weight times its title's BM25 score (``plan.lexical_term``)."""
        # One collection for the whole call: a switch between the size check and the query must not send
        # the query to a collection whose vectors have other sizes (a rebuild's new text model).
        version = self.collection
        # The title goes into the plan only where the route weighs it and the collection has the vector.
        words = title if title and weights.get(LEXICAL, 0.0) > 0 and self._has_lexical(version) else None
        plan = plan_search(
            vectors,
            weights,
            k,
            search_filter,
            fusion,
            dims=self._dims(version),
            rrf_k=self.settings.rrf_k,
            candidates=candidates,
            with_vectors=with_vectors,
            exact=exact,
            slow_id_filter=self.slow_id_filter,
            diversity=diversity,
            lexical=lexical.query(words) if words else None,
        )
        return plan.keep(to_hits(self._query_batch(version, [plan])[0]))

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
        version = self.collection  # one collection for the whole call (see ``search``)
        plans = plan_candidates(vectors, k, search_filter, dims=self._dims(version), candidates=candidates)
        answers = self._query_batch(version, list(plans.values()))
        return {n: to_hits(a) for n, a in zip(plans, answers, strict=True)}

    def scroll(self, batch_size: int = 256, with_vectors: bool = True) -> Iterator[list[ProductPoint]]:
        """Every stored product, in batches, in a stable order."""
        version, offset = self.collection, None  # the offsets are this collection's, even if the alias moves
        while True:
            records, offset = self._scroll_page(version, offset, batch_size, with_vectors)
            batch = to_points(records)
            if batch:
                yield batch
            if offset is None:
                return

    def count(self) -> int:
        return self._count(self.collection)

    # --- the index, health, lifecycle ------------------------------------------------------------------
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
    def close(self) -> None:
        """Release the client or the store's folder (a pinned view closes nothing)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
