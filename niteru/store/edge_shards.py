"""The open Edge shards of one store folder, the alias state, and the background index build.

Shared by a store and its ``pinned`` views. ``lock`` serialises writes, alias switches and index swaps.

Index build (``build_index``): under the lock the shard is flushed and its folder copied (no write can
fall between the two); a child process loads the copy and runs Edge's ``optimize`` (it holds the GIL,
so in this process it would stall every query for the whole build); writes meanwhile go to the live
shard and to a journal; then, under the lock, the copy is opened, the journal replayed on it, and it
replaces the live shard (copy fsynced, state file, then the in-memory reference). Readers never wait:
every call on a shard holds a lease on it (``edge_leases``), and the replaced shard closes when the last
call using it ends. The child process dies with this one, and shard folders the state file does not
name (a crash during a build) are removed when the store opens.
``phase``/``wait_phase`` tell where a build is (copying, indexing, or serving) without polling.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from niteru.settings import QuantizationKind, Settings
from niteru.store.edge_config import graph_options, open_shard
from niteru.store.edge_layout import OwnerLock, fsync_tree, next_dir, read_state, remove_orphans, write_state
from niteru.store.edge_leases import ShardHandle, ShardLeases
from niteru.store.quantization import VectorQuantization, edge_kinds, edge_vector_options
from niteru.store.records import LEXICAL, StoreError, StoreUnavailableError, UnknownCollectionError

log = logging.getLogger(__name__)
# Edge's default optimizer indexing threshold (KB of vectors in a segment): Qdrant's 10,000 KB.
EDGE_DEFAULT_INDEXING_THRESHOLD_KB = 10_000


class IndexBuildError(StoreError):
    """The child process building the HNSW index failed (the live shard is untouched)."""


class EdgeShards:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.store_path
        self.owner = OwnerLock(self.root)
        self.owner.acquire()
        self.state = read_state(self.root)
        remove_orphans(self.root, self.state)
        self.lock = threading.RLock()
        self._leases = ShardLeases(self._load)
        self._journals: dict[str, list[Any]] = {}
        self._builds: dict[str, threading.Thread] = {}
        self._errors: dict[str, BaseException] = {}
        self._written: dict[str, int] = {}
        # Where each running build is ("copying", then "indexing" until the indexed copy serves), with a
        # condition on the store's lock: ``build_index(wait=True)`` waits on it rather than polling, and a
        # caller holding the lock when its wait ends also holds the build before its swap.
        self._phases: dict[str, str] = {}
        self._progress = threading.Condition(self.lock)
        self._dims: dict[str, dict[str, int]] = {}
        self._lexical: dict[str, bool] = {}
        self._closed = False

    # --- shards ------------------------------------------------------------------------------------------
    def get(self, version: str) -> Any:
        """A handle on ``version``'s shard: each call runs on the shard serving at that moment."""
        if self._closed:
            raise StoreUnavailableError(f"the store {self.root} is closed")
        if version not in self._leases.open:
            self._load(version)
        return ShardHandle(self._leases, version)

    def _load(self, version: str) -> None:
        with self.lock:
            if self._closed:
                raise StoreUnavailableError(f"the store {self.root} is closed")
            if version not in self._leases.open:
                self._leases.replace(
                    version, open_shard(self._folder(version), self.settings.edge_search_threads), None
                )

    def create(
        self,
        version: str,
        dims: Mapping[str, int],
        quantization: Mapping[str, VectorQuantization],
        lexical: bool = False,
    ) -> Any:
        """A new empty shard with cosine vectors of ``dims``, those named in ``quantization`` quantized, and
        with ``lexical`` the sparse ``LEXICAL`` vector (IDF modifier)."""
        import qdrant_edge as qe

        kb = self.settings.edge_indexing_threshold_kb
        options = {n: edge_vector_options(quantization.get(n)) | graph_options(int(d)) for n, d in dims.items()}
        cosine = qe.Distance.Cosine
        vectors = {n: qe.EdgeVectorParams(size=int(dims[n]), distance=cosine, **o) for n, o in options.items()}
        sparse = {LEXICAL: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)} if lexical else None
        config = qe.EdgeConfig(
            vectors=vectors,
            sparse_vectors=sparse,
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=kb) if kb else None,
            max_search_threads=self.settings.edge_search_threads,
        )
        with self.lock:
            folder = next_dir(self.root, version, None)
            shard = qe.EdgeShard.create(str(self.root / folder), config)
            self._leases.replace(version, shard, None)
            self.state.dirs[version] = folder
            write_state(self.root, self.state)
            return shard

    def dims(self, version: str) -> dict[str, int]:
        """Vector sizes of ``version`` (read once from the shard's own config file)."""
        if version not in self._dims:
            config = self._config(version)
            self._dims[version] = {n: int(v["size"]) for n, v in config["vectors"].items()}
            self._lexical[version] = LEXICAL in (config.get("sparse_vectors") or {})
        return self._dims[version]

    def has_lexical(self, version: str) -> bool:
        """Whether ``version`` has the lexical vector (read with its sizes)."""
        self.dims(version)
        return self._lexical[version]

    def _folder(self, version: str) -> Path:
        """The shard folder of ``version``, as the state file names it."""
        folder = self.state.dirs.get(version)
        if folder is None:
            raise UnknownCollectionError(f"no collection {version!r} in {self.root}")
        return self.root / folder

    def _config(self, version: str) -> dict[str, Any]:
        return json.loads((self._folder(version) / "edge_config.json").read_text())  # type: ignore[no-any-return]

    def quantization(self, version: str) -> dict[str, QuantizationKind]:
        """Each named vector's quantization, as the shard's config file says (not the settings)."""
        return edge_kinds(self._folder(version))

    def set_alias(self, alias: str, version: str) -> None:
        with self.lock:
            if version not in self.state.dirs:
                raise UnknownCollectionError(f"no collection {version!r} in {self.root}")
            self.state.aliases[alias] = version
            write_state(self.root, self.state)  # durable first: a crash after this serves the new one

    def drop(self, version: str) -> None:
        self._wait_build(version)  # outside the lock: the build needs it to finish
        with self.lock:
            folder = self.state.dirs.pop(version, None)
            write_state(self.root, self.state)
            self._leases.retire(version, None if folder is None else self.root / folder)

    def apply(self, version: str, operation: Any) -> None:
        """Apply an update (the caller holds ``lock``); journal it while the version's index is building."""
        self.get(version).update(operation)
        journal = self._journals.get(version)
        if journal is not None:
            journal.append(operation)

    def wrote(self, version: str, n: int) -> None:
        """Count writes; after ``edge_index_after`` of them, rebuild the index in the background."""
        every = self.settings.edge_index_after
        self._written[version] = self._written.get(version, 0) + n
        if every and self._written[version] >= every and not self.building(version):
            self.build_index(version, wait=False)

    # --- the index ---------------------------------------------------------------------------------------
    def building(self, version: str) -> bool:
        thread = self._builds.get(version)
        return thread is not None and thread.is_alive()

    def build_index(self, version: str, wait: bool) -> bool:
        """Build the HNSW index of ``version`` off this process (see the module docstring). With ``wait``,
        return when a build that began after every write before this call serves; else at once. False when
        no build was started here (one was already running, or nothing is worth indexing)."""
        started_any = False
        while self._worth_indexing(version):
            with self.lock:
                started = not self.building(version)
                if started:
                    self._written[version] = 0
                    self._set_phase(version, "copying")
                    self._errors.pop(version, None)
                    thread = threading.Thread(target=self._build, args=(version,), name=f"index-{version}", daemon=True)
                    self._builds[version] = thread
                    thread.start()
            started_any |= started
            if not wait:
                break
            self.wait_phase(version, None)
            error = self._errors.pop(version, None)
            if error is not None:
                raise IndexBuildError(f"index build of {version} failed: {error}") from error
            if started:
                break
            # A background build (``wrote``) was running: it indexed only the copy it took when it began,
            # and what was written since sits unindexed. Waiting for it alone left a rebuilt catalog-dev
            # with 15,360 of its 40,101 vectors indexed (the first 5,120 products), and 100k with a third:
            # text and joint searched exactly, 3.4 ms a query instead of 1. So build again.
        return started_any

    def _worth_indexing(self, version: str) -> bool:
        """Whether Edge would index anything: below its indexing threshold a segment stays a plain exact
        scan, and a build would only copy the shard for nothing (small shops, tests)."""
        threshold_kb = self.settings.edge_indexing_threshold_kb or EDGE_DEFAULT_INDEXING_THRESHOLD_KB
        info = self.get(version).info()
        unindexed = int(info.points_count) * len(self.dims(version)) - self.dense_indexed(version, info)
        per_vector_kb = max(self.dims(version).values()) * 4 / 1024
        return unindexed * per_vector_kb >= threshold_kb

    def dense_indexed(self, version: str, info: Any) -> int:
        """The HNSW-indexed dense vectors of ``version`` (``info``: its shard's). Edge counts the lexical
        vectors too, indexed as they are written (an inverted index needs no build): those are left out."""
        indexed = int(info.indexed_vectors_count)
        if not self.has_lexical(version):
            return indexed
        import qdrant_edge as qe

        with_lexical = qe.CountRequest(exact=True, filter=qe.Filter(must=[qe.HasVectorCondition(LEXICAL)]))
        return max(0, indexed - int(self.get(version).count(with_lexical)))

    def phase(self, version: str) -> str | None:
        """``copying`` or ``indexing`` while a build of ``version`` runs; None once it serves (or failed)."""
        return self._phases.get(version)

    def wait_phase(self, version: str, phase: str | None, timeout: float | None = None) -> bool:
        """Wait until the build of ``version`` is at ``phase`` (None: no build pending). On return the
        lock is held as it was at the call: a caller inside ``lock`` holds off the swap from then on."""
        with self._progress:
            return self._progress.wait_for(lambda: self.phase(version) == phase, timeout)

    def _set_phase(self, version: str, phase: str | None) -> None:
        with self._progress:
            if phase is None:
                self._phases.pop(version, None)
            else:
                self._phases[version] = phase
            self._progress.notify_all()

    def _wait_build(self, version: str) -> None:
        thread = self._builds.get(version)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _build(self, version: str) -> None:
        t0 = time.perf_counter()
        copy_dir: str | None = None
        try:
            with self.lock:
                shard = self.get(version)
                shard.flush()
                copy_dir = next_dir(self.root, version, self.state.dirs[version])
                shutil.copytree(self.root / self.state.dirs[version], self.root / copy_dir)
                self._journals[version] = []
                self._set_phase(version, "indexing")
            # The child dies with this process (it is told our pid: see edge_index) rather than
            # outliving a crash and writing into a folder nobody will use.
            cmd = [sys.executable, "-m", "niteru.store.edge_index", str(self.root / copy_dir), str(os.getpid())]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise IndexBuildError(done.stderr.strip()[-2000:] or f"exit status {done.returncode}")
            fsync_tree(self.root / copy_dir)  # outside the lock: the bulk of the copy reaches the disk here
            with self.lock:
                fresh = open_shard(self.root / copy_dir, self.settings.edge_search_threads)
                for operation in self._journals.pop(version, []):
                    fresh.update(operation)
                fresh.flush()
                # Durable before the state file names it: a crash after the switch must find the copy whole,
                # with the writes acknowledged during the build.
                fsync_tree(self.root / copy_dir)
                old_dir = self.state.dirs[version]
                self.state.dirs[version] = copy_dir
                write_state(self.root, self.state)
                self._leases.replace(version, fresh, self.root / old_dir)
                self._set_phase(version, None)
            copy_dir = None  # it is the live shard now
            log.info("edge index of %s built in %.1f s (%s)", version, time.perf_counter() - t0, fresh.info())
        except BaseException as exc:  # recorded for a waiting caller; a background build only logs
            self._errors[version] = exc
            log.exception("edge index build of %s failed; the live shard keeps serving", version)
        finally:
            with self.lock:
                self._journals.pop(version, None)
                self._set_phase(version, None)
            if copy_dir is not None:
                shutil.rmtree(self.root / copy_dir, ignore_errors=True)

    def close(self) -> None:
        for version in list(self._builds):
            self._wait_build(version)
        with self.lock:
            self._leases.close_all()
            self._closed = True
            self.owner.release()
