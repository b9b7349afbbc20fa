"""``ProductStore`` on qdrant-client: the embedded store on disk, or a Qdrant server, by settings.

One collection per build, named ``<alias>-<UTC stamp>``, always reached through the alias so that a rebuild
can swap it atomically. Two named cosine vectors (``image``, ``text``); keyword payload indexes on category,
subcategory and shop_id (and product_id, image_version for the conditional writes). Point ids are UUIDv5 of
the shop's product id.

The embedded store (``QdrantClient(path=...)``) is an exact scan in pure Python, holds a file lock (one
process at a time) and is not thread-safe: calls are serialised with a lock. A server needs no lock.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from niteru.products import Product, point_id
from niteru.settings import Settings
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
from niteru.store.qdrant_filters import as_floats, fused_query, prefetch_size, to_filter

log = logging.getLogger(__name__)

KEYWORD_INDEXES = ("category", "subcategory", "shop_id", "product_id")


class QdrantProductStore(ProductStore):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.alias = settings.store_alias
        self.embedded = settings.qdrant_url is None
        # The embedded client keeps SQLite and numpy state that is unsafe across threads.
        self._lock: contextlib.AbstractContextManager[Any] = threading.RLock() if self.embedded else _NoLock()
        self._collection: str | None = None
        self._pinned = False  # a view of one versioned collection that shares this client (``pinned``)
        self._dims: dict[str, dict[str, int]] = {}  # vector sizes by collection (shared with pinned views)
        self.client = self._connect()

    def _connect(self) -> QdrantClient:
        s = self.settings
        if s.qdrant_url is None:
            s.store_path.mkdir(parents=True, exist_ok=True)
            try:
                return QdrantClient(path=str(s.store_path), force_disable_check_same_thread=True)
            except RuntimeError as exc:  # the folder's lock is held by another process
                raise StoreUnavailableError(
                    f"the embedded store {s.store_path} is in use by another process (it allows one at a time; "
                    "stop the other `niteru serve`/`niteru ingest`, or use a Qdrant server via NITERU_QDRANT_URL)"
                ) from exc
        api_key = s.qdrant_api_key.get_secret_value() if s.qdrant_api_key else None
        return QdrantClient(url=s.qdrant_url, api_key=api_key, timeout=int(max(1, s.qdrant_timeout)))

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        """Serialise embedded calls; turn transport failures into ``StoreUnavailableError``."""
        with self._lock:
            try:
                yield
            except (ResponseHandlingException, httpx.TransportError, ConnectionError) as exc:
                raise StoreUnavailableError(f"Qdrant at {self.settings.qdrant_url} is unreachable: {exc}") from exc
            except UnexpectedResponse as exc:
                if exc.status_code is not None and exc.status_code >= 500:
                    raise StoreUnavailableError(f"Qdrant answered {exc.status_code}: {exc.content!r}") from exc
                raise

    # --- collection and alias ------------------------------------------------------------------------
    def _aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    @property
    def collection(self) -> str:
        """The versioned collection behind the alias (resolved once; raises when there is none yet)."""
        if self._collection is None:
            with self._call():
                self._collection = self._aliases().get(self.alias)
            if self._collection is None:
                raise StoreUnavailableError(f"the store has no '{self.alias}' collection yet: run `niteru ingest`")
        return self._collection

    def _create(self, dims: Mapping[str, int]) -> str:
        name = f"{self.alias}-{datetime.now(UTC):%Y%m%dt%H%M%S%f}"
        self.client.create_collection(
            name,
            vectors_config={
                n: models.VectorParams(size=dims[n], distance=models.Distance.COSINE) for n in VECTOR_NAMES
            },
        )
        with warnings.catch_warnings():
            # The embedded store ignores payload indexes (and warns); they are declared anyway so the
            # collection's schema is the same on a server.
            warnings.simplefilter("ignore", UserWarning)
            for key in KEYWORD_INDEXES:
                self.client.create_payload_index(name, key, field_schema=models.PayloadSchemaType.KEYWORD)
            self.client.create_payload_index(name, "image_version", field_schema=models.PayloadSchemaType.INTEGER)
            self.client.create_payload_index(name, "price", field_schema=models.PayloadSchemaType.FLOAT)
        return name

    def current_version(self) -> str:
        with self._call():
            self._collection = self._aliases().get(self.alias)
        return self.collection

    def versions(self) -> list[str]:
        with self._call():
            names = [c.name for c in self.client.get_collections().collections]
        return sorted(n for n in names if n.startswith(f"{self.alias}-"))

    def create_version(self, dims: Mapping[str, int]) -> str:
        with self._call():
            return self._create(dims)

    def _sizes(self, name: str) -> dict[str, int]:
        if name not in self._dims:
            with self._call():
                params = self.client.get_collection(name).config.params.vectors
            self._dims[name] = {n: v.size for n, v in params.items()} if isinstance(params, dict) else {}
        return self._dims[name]

    def pinned(self, version: str) -> QdrantProductStore:
        if version not in self.versions():
            raise UnknownCollectionError(f"no collection {version!r}")
        view = copy.copy(self)  # shallow: the same client and lock
        view._collection, view._pinned = version, True
        return view

    def exclusive(self) -> contextlib.AbstractContextManager[Any]:
        return self._lock

    def switch(self, version: str) -> None:
        if version not in self.versions():
            raise UnknownCollectionError(f"no collection {version!r}")
        with self._call():
            ops: list[models.AliasOperations] = []
            if self.alias in self._aliases():
                ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.alias)))
            ops.append(
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=version, alias_name=self.alias)
                )
            )
            # Both operations in one request: a reader never sees the alias missing.
            self.client.update_collection_aliases(change_aliases_operations=ops)
            self._collection = version

    def drop(self, version: str) -> None:
        with self._call():
            if self._aliases().get(self.alias) == version:
                raise ValueError(f"{version} is the current collection; switch away from it first")
            self.client.delete_collection(version)

    def ensure_collection(self, dims: Mapping[str, int]) -> None:
        with self._call():
            current = self._aliases().get(self.alias)
            if current is not None:
                params = self.client.get_collection(current).config.params.vectors
                stored = {n: v.size for n, v in params.items()} if isinstance(params, dict) else {}
                if stored != dict(dims):
                    raise StoreSchemaError(
                        f"collection {current} has vectors {stored} but the models make {dict(dims)}: "
                        f"delete {self.settings.store_path} (embedded) or the collection, then `niteru ingest`"
                    )
                self._collection = current
                return
            name = self._create(dims)
            self.client.update_collection_aliases(
                change_aliases_operations=[
                    models.CreateAliasOperation(
                        create_alias=models.CreateAlias(collection_name=name, alias_name=self.alias)
                    )
                ]
            )
            self._collection = name
            log.info("created collection %s behind alias %s (%s)", name, self.alias, dict(dims))

    # --- writes ----------------------------------------------------------------------------------------
    def _stored_versions(self, product_ids: Sequence[str]) -> dict[str, int]:
        records = self.client.retrieve(
            self.collection, [point_id(p) for p in product_ids], with_payload=["product_id", "image_version"]
        )
        return {r.payload["product_id"]: int(r.payload["image_version"]) for r in records if r.payload}

    def _write(self, points: Sequence[ProductPoint], floor: int) -> None:
        structs = [
            models.PointStruct(
                id=point_id(p.product.product_id),
                vector={n: np.asarray(v, np.float32).tolist() for n, v in p.vectors.items()},
                payload=p.product.model_dump(mode="json"),
            )
            for p in points
        ]
        # Optimistic concurrency: an existing point is only replaced while its image_version <= floor;
        # a point that does not exist yet is inserted.
        condition = models.Filter(must=[models.FieldCondition(key="image_version", range=models.Range(lte=floor))])
        self.client.upsert(self.collection, structs, wait=True, update_filter=condition)

    def upsert(self, points: Sequence[ProductPoint]) -> UpsertOutcome:
        latest = newest_per_product(points)
        if not latest:
            return UpsertOutcome()
        for p in latest.values():
            check_query(p.vectors, self._sizes(self.collection))
        with self._call():
            return conditional_upsert(latest, self._stored_versions, self._write)

    def delete(self, product_id: str) -> bool:
        with self._call():
            found = self.client.retrieve(self.collection, [point_id(product_id)], with_payload=False)
            if not found:
                return False
            self.client.delete(
                self.collection, points_selector=models.PointIdsList(points=[point_id(product_id)]), wait=True
            )
        return True

    # --- reads -----------------------------------------------------------------------------------------
    def get(self, product_id: str, with_vectors: bool = False) -> ProductPoint | None:
        with self._call():
            records = self.client.retrieve(
                self.collection, [point_id(product_id)], with_payload=True, with_vectors=with_vectors
            )
        if not records or not records[0].payload:
            return None
        return ProductPoint(Product.model_validate(records[0].payload), _named_vectors(records[0].vector))

    def content_hashes(self, product_ids: Sequence[str]) -> dict[str, str]:
        if not product_ids:
            return {}
        with self._call():
            records = self.client.retrieve(
                self.collection, [point_id(p) for p in product_ids], with_payload=["product_id", "content_hash"]
            )
        return {r.payload["product_id"]: r.payload["content_hash"] for r in records if r.payload}

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
        names = [n for n in VECTOR_NAMES if n in vectors]
        if not names or sum(max(0.0, float(weights.get(n, 0.0))) for n in names) <= 0:
            raise ValueError(f"no vector to search with (weights {dict(weights)}, vectors {sorted(vectors)})")
        # One collection for the whole call: a switch between the size check and the query must not send
        # the query to a collection whose vectors have other sizes (a rebuild's new text model).
        collection = self.collection
        check_query(vectors, self._sizes(collection), k)
        if fusion is not Fusion.wsum:  # rank and distribution fusions: a zero-weight list is left out
            names = [n for n in names if weights.get(n, 0.0) > 0]
        # Only where the excluded ids cannot change the others' scores: one exact list, or the weighted sum
        # of cosines. Ranks (rrf, wrrf) and score distributions (dbsf) must be of the filtered lists.
        if len(names) > 1 and fusion is not Fusion.wsum:
            drop: tuple[str, ...] = ()
        else:
            search_filter, drop = self._split_filter(search_filter)
        limit = k + len(drop)
        query_filter = to_filter(search_filter)
        with self._call():
            if len(names) == 1:
                result = self.client.query_points(
                    collection,
                    query=as_floats(vectors[names[0]]),
                    using=names[0],
                    query_filter=query_filter,
                    limit=limit,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
            else:
                result = self.client.query_points(
                    collection,
                    **fused_query(
                        vectors,
                        weights,
                        names,
                        fusion,
                        candidates or prefetch_size(limit),
                        query_filter,
                        self.settings.rrf_k,
                    ),
                    query_filter=query_filter,
                    limit=limit,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
        return [h for h in _hits(result.points) if h.product.product_id not in drop][:k]

    def candidate_lists(
        self,
        vectors: Mapping[str, np.ndarray],
        k: int,
        search_filter: SearchFilter | None = None,
        *,
        candidates: int | None = None,
    ) -> dict[str, list[Hit]]:
        collection = self.collection  # one collection for the whole call (see ``search``)
        check_query(vectors, self._sizes(collection), k)
        # Filtered as the fused search filters its lists (see ``search``): the ranks explain shows are those.
        limit = candidates or prefetch_size(k)
        query_filter = to_filter(search_filter)
        names = [n for n in VECTOR_NAMES if n in vectors]
        with self._call():
            responses = self.client.query_batch_points(
                collection,
                [
                    models.QueryRequest(
                        query=as_floats(vectors[n]), using=n, filter=query_filter, limit=limit, with_payload=True
                    )
                    for n in names
                ],
            )
        return {n: _hits(r.points) for n, r in zip(names, responses, strict=True)}

    def _split_filter(self, f: SearchFilter | None) -> tuple[SearchFilter | None, tuple[str, ...]]:
        """The embedded store checks any filter in Python point by point (~0.3 s over 13k products on 2
        cores) but scans unfiltered in numpy. When the filter only excludes ids (the query product), it is
        cheaper to ask for that many more and drop them here; a server filters by id natively."""
        if self.embedded and f is not None and f.exclude_product_ids and f.only_excludes_ids:
            return None, f.exclude_product_ids
        return f, ()

    def scroll(self, batch_size: int = 256, with_vectors: bool = True) -> Iterator[list[ProductPoint]]:
        offset: Any = None
        while True:
            with self._call():
                records, offset = self.client.scroll(
                    self.collection, limit=batch_size, offset=offset, with_payload=True, with_vectors=with_vectors
                )
            batch = []
            for r in records:
                if not r.payload:
                    continue
                batch.append(ProductPoint(Product.model_validate(r.payload), _named_vectors(r.vector)))
            if batch:
                yield batch
            if offset is None:
                return

    def count(self) -> int:
        with self._call():
            return int(self.client.count(self.collection, exact=True).count)

    def ping(self) -> None:
        with self._call():
            self.client.get_collections()

    def info(self) -> dict[str, Any]:
        disk = None
        if self.embedded and self.settings.store_path.exists():
            disk = sum(f.stat().st_size for f in self.settings.store_path.rglob("*") if f.is_file())
        return {
            "engine": "qdrant-embedded" if self.embedded else "qdrant-server",
            "alias": self.alias,
            "collection": self.collection,
            "points": self.count(),
            "disk_bytes": disk,
        }

    def close(self) -> None:
        if self._pinned:
            return
        with self._lock:
            self.client.close()


def _named_vectors(vector: Any) -> dict[str, np.ndarray]:
    """A record's named vectors as float32 arrays ({} when it was read without vectors)."""
    if not isinstance(vector, dict):
        return {}
    return {n: np.asarray(v, np.float32) for n, v in vector.items()}


def _hits(points: Sequence[models.ScoredPoint]) -> list[Hit]:
    return [
        Hit(Product.model_validate(p.payload), float(p.score), _named_vectors(p.vector)) for p in points if p.payload
    ]


class _NoLock(contextlib.AbstractContextManager[None]):
    def __exit__(self, *exc: object) -> None:
        return None
