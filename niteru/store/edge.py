"""``ProductStore`` on Qdrant Edge: Qdrant's Rust engine (segments, HNSW, payload indexes, WAL) in-process.

One Edge shard per versioned collection under ``store_path``; the alias and its atomic switch are the
state file of ``edge_layout``. Point ids, payloads, filters and the hybrid queries are the same as in
``qdrant.py``, so the two engines answer alike. Writes, switches and index swaps take one lock (the
conditional upsert is read, write, read back); reads take none: each Edge call holds the GIL for its
whole run, so calls never overlap, and a read sees a shard before or after a swap, never during.

The HNSW index is built by ``build_index`` on a copy of the shard in a child process (``edge_index``),
because Edge's ``optimize`` holds the GIL for its whole run (35 s for 20,000 1024-d points here) and
would stop every query of the process; queries go on against the unindexed shard meanwhile.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from niteru.products import Product, point_id
from niteru.settings import Settings
from niteru.store import edge_query as eq
from niteru.store.base import (
    VECTOR_NAMES,
    Fusion,
    Hit,
    ProductPoint,
    ProductStore,
    SearchFilter,
    StoreSchemaError,
    StoreUnavailableError,
    UnknownCollectionError,
    UpsertOutcome,
    check_query,
    conditional_upsert,
    newest_per_product,
)
from niteru.store.edge_layout import disk_bytes
from niteru.store.edge_shards import EdgeShards
from niteru.store.qdrant_filters import prefetch_size

log = logging.getLogger(__name__)

KEYWORD_INDEXES = ("category", "subcategory", "shop_id", "product_id")


class EdgeProductStore(ProductStore):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.alias = settings.store_alias
        self.shards = EdgeShards(settings)  # takes the owner lock: one process per folder
        self._pinned: str | None = None

    # --- collection and alias ------------------------------------------------------------------------
    @property
    def collection(self) -> str:
        if self._pinned is not None:
            return self._pinned
        name = self.shards.state.aliases.get(self.alias)
        if name is None:
            raise StoreUnavailableError(f"the store has no '{self.alias}' collection yet: run `niteru ingest`")
        return name

    def _shard(self) -> Any:
        return self.shards.get(self.collection)

    def _create(self, dims: Mapping[str, int]) -> str:
        import qdrant_edge as qe

        name = f"{self.alias}-{datetime.now(UTC):%Y%m%dt%H%M%S%f}"
        shard = self.shards.create(name, dims)
        # Default index parameters on purpose: a keyword index with HNSW links turned off (enable_hnsw=False)
        # leaves the filtered graph disconnected, and filtered searches then miss results.
        for key in KEYWORD_INDEXES:
            shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
        shard.update(qe.UpdateOperation.create_field_index("image_version", qe.PayloadSchemaType.Integer))
        shard.update(qe.UpdateOperation.create_field_index("price", qe.PayloadSchemaType.Float))
        return name

    def current_version(self) -> str:
        return self.collection

    def versions(self) -> list[str]:
        return sorted(n for n in self.shards.state.dirs if n.startswith(f"{self.alias}-"))

    def create_version(self, dims: Mapping[str, int]) -> str:
        with self.shards.lock:
            return self._create(dims)

    def pinned(self, version: str) -> EdgeProductStore:
        if version not in self.shards.state.dirs:
            raise UnknownCollectionError(f"no collection {version!r} in {self.settings.store_path}")
        view = copy.copy(self)  # shallow: the same shards and lock
        view._pinned = version
        return view

    def exclusive(self) -> Any:
        return self.shards.lock  # holds off writes and swaps; reads never wait

    def switch(self, version: str) -> None:
        self.shards.set_alias(self.alias, version)

    def drop(self, version: str) -> None:
        if self.shards.state.aliases.get(self.alias) == version:
            raise ValueError(f"{version} is the current collection; switch away from it first")
        self.shards.drop(version)

    def ensure_collection(self, dims: Mapping[str, int]) -> None:
        with self.shards.lock:
            current = self.shards.state.aliases.get(self.alias)
            if current is not None:
                stored = self.shards.dims(current)
                if stored != dict(dims):
                    raise StoreSchemaError(
                        f"collection {current} has vectors {stored} but the models make {dict(dims)}: "
                        f"delete {self.settings.store_path} or migrate, then `niteru ingest`"
                    )
                return
            name = self._create(dims)
            self.shards.set_alias(self.alias, name)
            log.info("created Edge collection %s behind alias %s (%s)", name, self.alias, dict(dims))

    # --- writes ----------------------------------------------------------------------------------------
    def _stored_versions(self, product_ids: Sequence[str]) -> dict[str, int]:
        records = self._shard().retrieve(
            [point_id(p) for p in product_ids], with_payload=["product_id", "image_version"], with_vector=False
        )
        return {r.payload["product_id"]: int(r.payload["image_version"]) for r in records if r.payload}

    def _write(self, points: Sequence[ProductPoint], floor: int) -> None:
        """Upsert, replacing an existing point only while its stored image_version <= floor."""
        import qdrant_edge as qe

        structs = [
            qe.Point(
                point_id(p.product.product_id),
                {n: np.asarray(v, np.float32).tolist() for n, v in p.vectors.items()},
                p.product.model_dump(mode="json"),
            )
            for p in points
        ]
        operation = qe.UpdateOperation.upsert_points(structs, condition=eq.version_at_most(floor))
        self.shards.apply(self.collection, operation)

    def upsert(self, points: Sequence[ProductPoint]) -> UpsertOutcome:
        latest = newest_per_product(points)
        if not latest:
            return UpsertOutcome()
        with self.shards.lock:  # the alias cannot move while this holds
            for p in latest.values():
                check_query(p.vectors, self.shards.dims(self.collection))
            outcome = conditional_upsert(latest, self._stored_versions, self._write)
        self.shards.wrote(self.collection, len(outcome.written))
        return outcome

    def delete(self, product_id: str) -> bool:
        import qdrant_edge as qe

        with self.shards.lock:
            if not self._shard().retrieve([point_id(product_id)], with_payload=False, with_vector=False):
                return False
            self.shards.apply(self.collection, qe.UpdateOperation.delete_points([point_id(product_id)]))
        return True

    # --- reads -----------------------------------------------------------------------------------------
    def get(self, product_id: str, with_vectors: bool = False) -> ProductPoint | None:
        records = self._shard().retrieve([point_id(product_id)], with_payload=True, with_vector=with_vectors)
        if not records or not records[0].payload:
            return None
        return ProductPoint(Product.model_validate(records[0].payload), eq.named_vectors(records[0].vector))

    def content_hashes(self, product_ids: Sequence[str]) -> dict[str, str]:
        if not product_ids:
            return {}
        records = self._shard().retrieve(
            [point_id(p) for p in product_ids], with_payload=["product_id", "content_hash"], with_vector=False
        )
        return {r.payload["product_id"]: r.payload["content_hash"] for r in records if r.payload}

    def _params(self, exact: bool = False) -> Any:
        import qdrant_edge as qe

        return qe.SearchParams(hnsw_ef=self.settings.edge_hnsw_ef, exact=exact)

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
    ) -> list[Hit]:
        """See ``ProductStore.search``; ``exact`` scans every point instead of the HNSW graph (benchmarks)."""
        import qdrant_edge as qe

        names = [n for n in VECTOR_NAMES if n in vectors]
        if not names or sum(max(0.0, float(weights.get(n, 0.0))) for n in names) <= 0:
            raise ValueError(f"no vector to search with (weights {dict(weights)}, vectors {sorted(vectors)})")
        # One collection for the whole call: a switch between the size check and the query must not
        # send the query to a collection whose vectors have other sizes (a rebuild's text model).
        version = self.collection
        check_query(vectors, self.shards.dims(version), k)
        if fusion is not Fusion.wsum:  # rank and distribution fusions: a zero-weight list is left out
            names = [n for n in names if weights.get(n, 0.0) > 0]
        query_filter, params = eq.to_filter(search_filter), self._params(exact)
        if len(names) == 1:
            request = qe.QueryRequest(
                limit=k,
                query=eq.nearest(vectors[names[0]], names[0]),
                filter=query_filter,
                params=params,
                with_payload=True,
                with_vector=with_vectors,
            )
        else:
            size = candidates or prefetch_size(k)
            prefetches, query = eq.fused_request(
                vectors, weights, names, fusion, size, query_filter, self.settings.rrf_k, params
            )
            request = qe.QueryRequest(
                limit=k,
                prefetches=prefetches,
                query=query,
                filter=query_filter,
                with_payload=True,
                with_vector=with_vectors,
            )
        return eq.to_hits(self.shards.get(version).query(request))

    def candidate_lists(
        self,
        vectors: Mapping[str, np.ndarray],
        k: int,
        search_filter: SearchFilter | None = None,
        *,
        candidates: int | None = None,
    ) -> dict[str, list[Hit]]:
        import qdrant_edge as qe

        version = self.collection  # one collection for the whole call (see ``search``)
        check_query(vectors, self.shards.dims(version), k)
        query_filter, params = eq.to_filter(search_filter), self._params()
        names = [n for n in VECTOR_NAMES if n in vectors]
        requests = [
            qe.QueryRequest(
                limit=candidates or prefetch_size(k),
                query=eq.nearest(vectors[n], n),
                filter=query_filter,
                params=params,
                with_payload=True,
            )
            for n in names
        ]
        answers = self.shards.get(version).query_batch(qe.QueryBatchRequest(requests))
        return {n: eq.to_hits(a) for n, a in zip(names, answers, strict=True)}

    def scroll(self, batch_size: int = 256, with_vectors: bool = True) -> Iterator[list[ProductPoint]]:
        import qdrant_edge as qe

        offset: Any = None
        shard = self._shard()  # the offsets are this collection's, even if the alias moves meanwhile
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(offset=offset, limit=batch_size, with_payload=True, with_vector=with_vectors)
            )
            batch = [ProductPoint(Product.model_validate(r.payload), eq.named_vectors(r.vector)) for r in records]
            if batch:
                yield batch
            if offset is None:
                return

    def count(self) -> int:
        import qdrant_edge as qe

        return int(self._shard().count(qe.CountRequest(exact=True)))

    # --- the index, health, lifecycle ------------------------------------------------------------------
    def build_index(self, wait: bool = True) -> bool:
        return self.shards.build_index(self.collection, wait)

    def ping(self) -> None:
        self.count()

    def info(self) -> dict[str, Any]:
        shard_info = self._shard().info()
        root = self.settings.store_path
        return {
            "engine": "edge",
            "alias": self.alias,
            "collection": self.collection,
            "points": self.count(),
            "indexed_vectors": int(shard_info.indexed_vectors_count),
            "segments": int(shard_info.segments_count),
            "index_building": self.shards.building(self.collection),
            "disk_bytes": disk_bytes(root),
        }

    def __enter__(self) -> EdgeProductStore:
        return self

    def close(self) -> None:
        if self._pinned is None:
            self.shards.close()
