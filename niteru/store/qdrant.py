"""``ProductStore`` on qdrant-client: the embedded store on disk, or a Qdrant server, by settings.

One collection per build, named ``<alias>-<UTC stamp>``, always reached through the alias so that a rebuild
can swap it atomically. Two named cosine vectors (``image``, ``text``); the payload indexes of
``PAYLOAD_INDEXES``. Point ids are UUIDv5 of the shop's product id.

The embedded store (``QdrantClient(path=...)``) is an exact scan in pure Python, holds a file lock (one
process at a time) and is not thread-safe: calls are serialised with a lock. A server needs no lock.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from niteru.settings import QuantizationKind, Settings
from niteru.store.base import ProductStore
from niteru.store.plan import Conditions, QueryPlan
from niteru.store.qdrant_plan import to_filter, to_request, to_sparse
from niteru.store.quantization import VectorQuantization, configured, kind_of
from niteru.store.records import LEXICAL, PAYLOAD_INDEXES, VECTOR_NAMES, Row, StoreUnavailableError

SCHEMA_TYPES = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
}


class QdrantProductStore(ProductStore):
    rebuild_hint = "delete {path} (embedded) or the collection, then `niteru ingest`"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.embedded = settings.qdrant_url is None
        # The embedded client keeps SQLite and numpy state that is unsafe across threads.
        self.lock = threading.RLock() if self.embedded else _NoLock()
        # The embedded store checks any filter in Python point by point but scans unfiltered in numpy;
        # a server filters by id natively.
        self.slow_id_filter = self.embedded
        self._collection: str | None = None  # the alias's collection, as last read
        self._sizes: dict[str, dict[str, int]] = {}  # vector sizes by collection (shared with pinned views)
        self._lexical: dict[str, bool] = {}  # whether each collection has the lexical vector (likewise)
        self.client = self._connect()
        self.quantization = configured(settings)
        # Local mode searches exactly (it has no quantized codes to rescore, and warns about search params).
        self._search_quantization = {} if self.embedded else self.quantization

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
        with self.lock:
            try:
                yield
            except (ResponseHandlingException, httpx.TransportError, ConnectionError) as exc:
                raise StoreUnavailableError(f"Qdrant at {self.settings.qdrant_url} is unreachable: {exc}") from exc
            except UnexpectedResponse as exc:
                if exc.status_code is not None and exc.status_code >= 500:
                    raise StoreUnavailableError(f"Qdrant answered {exc.status_code}: {exc.content!r}") from exc
                raise

    # --- primitives ------------------------------------------------------------------------------------
    def _aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def _alias_target(self, refresh: bool) -> str | None:
        if refresh or self._collection is None:  # resolved once; ``current_version`` reads it anew
            with self._call():
                self._collection = self._aliases().get(self.alias)
        return self._collection

    def _collections(self) -> list[str]:
        with self._call():
            return [c.name for c in self.client.get_collections().collections]

    def _create_collection(
        self, name: str, dims: Mapping[str, int], quantized: bool = True, lexical: bool = False
    ) -> None:
        quantization = self.quantization if quantized else {}
        vectors = {n: vector_params(dims[n], quantization.get(n)) for n in VECTOR_NAMES if n in dims}
        sparse = {LEXICAL: models.SparseVectorParams(modifier=models.Modifier.IDF)} if lexical else None
        with self._call(), warnings.catch_warnings():
            self.client.create_collection(name, vectors_config=vectors, sparse_vectors_config=sparse)
            # The embedded store ignores payload indexes (and warns); they are declared anyway so the
            # collection's schema is the same on a server.
            warnings.simplefilter("ignore", UserWarning)
            for key, kind in PAYLOAD_INDEXES.items():
                self.client.create_payload_index(name, key, field_schema=SCHEMA_TYPES[kind])

    def _point_alias(self, version: str) -> None:
        with self._call():
            ops: list[models.AliasOperations] = []
            if self.alias in self._aliases():
                ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.alias)))
            create = models.CreateAlias(collection_name=version, alias_name=self.alias)
            ops.append(models.CreateAliasOperation(create_alias=create))
            # Both operations in one request: a reader never sees the alias missing.
            self.client.update_collection_aliases(change_aliases_operations=ops)
            self._collection = version

    def _drop_collection(self, version: str) -> None:
        with self._call():
            self.client.delete_collection(version)

    def _dims(self, version: str) -> dict[str, int]:
        if version not in self._sizes:
            with self._call():
                params = self.client.get_collection(version).config.params
            vectors = params.vectors
            self._sizes[version] = {n: v.size for n, v in vectors.items()} if isinstance(vectors, dict) else {}
            self._lexical[version] = LEXICAL in (params.sparse_vectors or {})
        return self._sizes[version]

    def _has_lexical(self, version: str) -> bool:
        self._dims(version)  # read with the sizes, once
        return self._lexical[version]

    def quantization_of(self, version: str) -> dict[str, QuantizationKind]:
        """Each named vector's quantization, as the collection's config says (not the settings)."""
        with self._call():
            params = self.client.get_collection(version).config.params.vectors
        vectors = params if isinstance(params, dict) else {}
        return {
            n: kind_of(v.quantization_config.model_dump() if v.quantization_config else None)
            for n, v in vectors.items()
        }

    def _retrieve(self, version: str, ids: list[str], payload: bool | list[str], vectors: bool) -> Sequence[Any]:
        with self._call():
            return self.client.retrieve(version, ids, with_payload=payload, with_vectors=vectors)

    def _query_batch(self, version: str, plans: Sequence[QueryPlan]) -> list[Sequence[Any]]:
        with self._call():
            responses = self.client.query_batch_points(
                version, [to_request(p, self._search_quantization) for p in plans]
            )
        return [r.points for r in responses]

    def _scroll_page(self, version: str, offset: Any, limit: int, vectors: bool) -> tuple[Sequence[Any], Any]:
        with self._call():
            return self.client.scroll(version, limit=limit, offset=offset, with_payload=True, with_vectors=vectors)

    def _count(self, version: str) -> int:
        with self._call():
            return int(self.client.count(version, exact=True).count)

    def _write(self, version: str, rows: Sequence[Row], condition: Conditions) -> None:
        structs = [
            models.PointStruct(id=i, vector={n: _vector(n, x) for n, x in v.items()}, payload=p) for i, v, p in rows
        ]
        with self._call():
            self.client.upsert(version, structs, wait=True, update_filter=to_filter(condition))

    def _delete(self, version: str, condition: Conditions) -> None:
        selector = models.FilterSelector(filter=to_filter(condition))
        with self._call():
            self.client.delete(version, points_selector=selector, wait=True)

    # --- health, lifecycle -----------------------------------------------------------------------------
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
            **{f"quantization_{n}": kind for n, kind in self.quantization_of(self.collection).items()},
            "disk_bytes": disk,
        }

    def close(self) -> None:
        if self._pinned is not None:
            return
        with self.lock:
            self.client.close()


def _vector(name: str, value: Any) -> Any:
    """A row's vector as qdrant-client takes it: the lexical one as a ``SparseVector``."""
    return to_sparse(value) if name == LEXICAL else value


def vector_params(size: int, q: VectorQuantization | None) -> models.VectorParams:
    """A cosine vector of ``size``, quantized as ``q`` (codes always in RAM, float32 originals on disk)."""
    if q is None:
        return models.VectorParams(size=size, distance=models.Distance.COSINE)
    config: models.QuantizationConfig
    # always_ram rather than the newer ``memory``: a server older than qdrant-client knows the former.
    if q.kind == "scalar":
        scalar = models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=q.scalar_quantile, always_ram=True
        )
        config = models.ScalarQuantization(scalar=scalar)
    elif q.kind == "product":
        compression = models.CompressionRatio(f"x{q.pq_compression}")
        config = models.ProductQuantization(
            product=models.ProductQuantizationConfig(compression=compression, always_ram=True)
        )
    elif q.kind == "binary":
        encoding = models.BinaryQuantizationEncoding(BINARY_ENCODING_VALUES[q.binary_bits])
        config = models.BinaryQuantization(binary=models.BinaryQuantizationConfig(encoding=encoding, always_ram=True))
    else:
        bits = models.TurboQuantBitSize("bits" + q.turbo_bits.replace(".", "_"))
        config = models.TurboQuantization(turbo=models.TurboQuantQuantizationConfig(bits=bits, always_ram=True))
    return models.VectorParams(
        size=size, distance=models.Distance.COSINE, on_disk=q.originals_on_disk or None, quantization_config=config
    )


BINARY_ENCODING_VALUES = {"1": "one_bit", "1.5": "one_and_half_bits", "2": "two_bits"}


class _NoLock(contextlib.AbstractContextManager[None]):
    def __exit__(self, *exc: object) -> None:
        return None
