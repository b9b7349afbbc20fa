"""``ProductStore`` on Qdrant Edge: Qdrant's Rust engine (segments, HNSW, payload indexes, WAL) in-process.

One Edge shard per versioned collection under ``store_path``; the alias and its atomic switch are the
state file of ``edge_layout``. Point ids, payloads, filters and the hybrid queries are those of the
shared plan (``plan.py``), so the two engines answer alike; a fused plan runs as plain nearest queries
fused here (``local_fusion``): Edge's own fused query costs several times more
(``bench/results/edge_fused_threads.md``). Every Edge call holds the GIL, plain queries too (``holds_gil``
below), so this process's searches do not overlap; the API runs them on its event loop. Writes, switches
and index swaps take one lock (the conditional upsert is read, write, read back); reads take none: each
call runs on the shard object of its moment under a lease (``edge_leases``), so a read sees a shard before
or after a swap, never during.

The HNSW index is built by ``build_index`` on a copy of the shard in a child process (``edge_index``),
because Edge's ``optimize`` holds the GIL for its whole run and would stop every query of the process;
queries go on against the unindexed shard meanwhile. This module never imports qdrant-client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from niteru.settings import Settings
from niteru.store.base import ProductStore
from niteru.store.edge_layout import disk_bytes
from niteru.store.edge_plan import to_filter, to_request
from niteru.store.edge_shards import EdgeShards
from niteru.store.local_fusion import is_fused, run_fused
from niteru.store.plan import Conditions, QueryPlan
from niteru.store.quantization import configured
from niteru.store.records import LEXICAL, PAYLOAD_INDEXES, Row


def _qe() -> Any:
    import qdrant_edge

    return qdrant_edge


def _vector(name: str, value: Any) -> Any:
    """A row's vector as Edge takes it: the lexical one as a ``SparseVector``."""
    return _qe().SparseVector(*value) if name == LEXICAL else value


class EdgeProductStore(ProductStore):
    rebuild_hint = "delete {path} or migrate, then `niteru ingest`"
    # qdrant-edge-py 0.9 holds the GIL through every call, plain nearest queries included (py-spy --gil on
    # the live store and on a fresh one: held 83-88% of the time, as a pure-Python loop):
    # bench/results/api_latency-threads.md.
    holds_gil = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.shards = EdgeShards(settings)  # takes the owner lock: one process per folder
        self.lock = self.shards.lock  # holds off writes and swaps; reads never wait
        # Fused plans run as plain queries fused here (``local_fusion``), or as Edge's own fused query (same
        # answers; tests and benchmarks flip this to compare the two).
        self.fuse_locally = settings.edge_fuse_locally
        self.quantization = configured(settings)  # for new collections, and the searches of quantized vectors

    # --- primitives ------------------------------------------------------------------------------------
    def _alias_target(self, refresh: bool) -> str | None:
        return self.shards.state.aliases.get(self.alias)

    def _collections(self) -> list[str]:
        return list(self.shards.state.dirs)

    def _create_collection(
        self, name: str, dims: Mapping[str, int], quantized: bool = True, lexical: bool = False
    ) -> None:
        qe = _qe()
        kinds = {
            "keyword": qe.PayloadSchemaType.Keyword,
            "integer": qe.PayloadSchemaType.Integer,
            "float": qe.PayloadSchemaType.Float,
        }
        shard = self.shards.create(name, dims, self.quantization if quantized else {}, lexical)
        # Default index parameters on purpose: a keyword index with HNSW links turned off (enable_hnsw=False)
        # leaves the filtered graph disconnected, and filtered searches then miss results.
        for key, kind in PAYLOAD_INDEXES.items():
            shard.update(qe.UpdateOperation.create_field_index(key, kinds[kind]))

    def _point_alias(self, version: str) -> None:
        self.shards.set_alias(self.alias, version)

    def _drop_collection(self, version: str) -> None:
        self.shards.drop(version)

    def _dims(self, version: str) -> dict[str, int]:
        return self.shards.dims(version)

    def _has_lexical(self, version: str) -> bool:
        return self.shards.has_lexical(version)

    def _retrieve(self, version: str, ids: list[str], payload: bool | list[str], vectors: bool) -> Sequence[Any]:
        return self.shards.get(version).retrieve(ids, with_payload=payload, with_vector=vectors)  # type: ignore[no-any-return]

    def _query_batch(self, version: str, plans: Sequence[QueryPlan]) -> list[Sequence[Any]]:
        if not self.fuse_locally or not any(is_fused(p) for p in plans):
            return self._engine_batch(version, plans)

        def run_plain(plain: Sequence[QueryPlan]) -> list[Sequence[Any]]:
            return self._engine_batch(version, plain)

        def retrieve(ids: list[str], vectors: bool) -> Sequence[Any]:
            return self._retrieve(version, ids, True, vectors)

        return [run_fused(p, run_plain, retrieve) if is_fused(p) else run_plain([p])[0] for p in plans]

    def _engine_batch(self, version: str, plans: Sequence[QueryPlan]) -> list[Sequence[Any]]:
        filters: dict[int, Any] = {}  # the plans are alive meanwhile: their ids name their conditions
        shard, requests = (
            self.shards.get(version),
            [to_request(p, self.settings.edge_hnsw_ef, self.quantization, filters) for p in plans],
        )
        if len(requests) == 1:
            return [shard.query(requests[0])]
        return shard.query_batch(_qe().QueryBatchRequest(requests))  # type: ignore[no-any-return]

    def _scroll_page(self, version: str, offset: Any, limit: int, vectors: bool) -> tuple[Sequence[Any], Any]:
        request = _qe().ScrollRequest(offset=offset, limit=limit, with_payload=True, with_vector=vectors)
        return self.shards.get(version).scroll(request)  # type: ignore[no-any-return]

    def _count(self, version: str) -> int:
        return int(self.shards.get(version).count(_qe().CountRequest(exact=True)))

    def _write(self, version: str, rows: Sequence[Row], condition: Conditions) -> None:
        qe = _qe()
        points = [qe.Point(i, {n: _vector(n, x) for n, x in v.items()}, p) for i, v, p in rows]
        self.shards.apply(version, qe.UpdateOperation.upsert_points(points, condition=to_filter(condition)))

    def _delete(self, version: str, condition: Conditions) -> None:
        self.shards.apply(version, _qe().UpdateOperation.delete_points_by_filter(to_filter(condition)))

    def _wrote(self, version: str, n: int) -> None:
        self.shards.wrote(version, n)

    # --- the index, health, lifecycle ------------------------------------------------------------------
    def build_index(self, wait: bool = True) -> bool:
        return self.shards.build_index(self.collection, wait)

    def ping(self) -> None:
        self.count()

    def info(self) -> dict[str, Any]:
        shard_info = self.shards.get(self.collection).info()
        return {
            "engine": "edge",
            "alias": self.alias,
            "collection": self.collection,
            "points": self.count(),
            "indexed_vectors": self.shards.dense_indexed(self.collection, shard_info),
            "segments": int(shard_info.segments_count),
            "index_building": self.shards.building(self.collection),
            **{f"quantization_{n}": kind for n, kind in self.shards.quantization(self.collection).items()},
            "disk_bytes": disk_bytes(self.settings.store_path),
        }

    def close(self) -> None:
        if self._pinned is None:
            self.shards.close()
