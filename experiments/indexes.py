"""The indexes under test behind one small interface: build, set search parameters, search, size.

faiss indexes are made with ``index_factory`` on the inner-product metric (the vectors are
L2-normalised, so this is cosine similarity). NGT (``ngtpy``) uses L2, which ranks unit vectors the
same way. ``rerank`` (PQ, IVF-PQ, OPQ, SQ8) asks the compressed index for ``rerank`` candidates and
re-orders them by exact inner product against the float32 vectors; those vectors are counted
separately (``rerank_bytes_per_vector``) because they can stay in the store on disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

from experiments.config import IndexConfig


def process_rss() -> int:
    """Resident set size of this process in bytes (Linux ``/proc``; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def factory_string(cfg: IndexConfig) -> str:
    """The faiss ``index_factory`` description of a configuration."""
    b = cfg.build
    # "np": no polysemous training (a slow annealing of code order that only the Hamming filter uses)
    pq = f"PQ{b.get('m')}x{b.get('nbits')}np"
    strings = {
        "flat": "Flat",
        "ivfflat": f"IVF{b.get('nlist')},Flat",
        "pq": pq,
        "ivfpq": f"IVF{b.get('nlist')},{pq}",
        "opq_ivfpq": f"OPQ{b.get('m')},IVF{b.get('nlist')},{pq}",
        "hnsw": f"HNSW{b.get('M')},Flat",
        "sq8": "SQ8",
    }
    return strings[cfg.family]


class AnnIndex:
    """A built index. ``search`` returns (nq, k) int64 ids into the base (-1 where fewer were found)."""

    train_seconds: float = 0.0
    add_seconds: float = 0.0
    index_bytes: int = 0
    fixed_bytes: int = 0  # what the index takes with no vector in it (codebooks, coarse centroids, OPQ matrix)
    disk_bytes: int = 0
    rss_growth: int = 0

    def configure(self, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def search(self, queries: np.ndarray, k: int, threads: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release files or memory the index holds."""


class FaissIndex(AnnIndex):
    def __init__(
        self, cfg: IndexConfig, base: np.ndarray, train_size: int, seed: int, progress: Any, opq_niter: int = 50
    ) -> None:
        import faiss

        self.base = base
        self.rerank = 0
        rss0 = process_rss()
        self.index: Any = faiss.index_factory(base.shape[1], factory_string(cfg), faiss.METRIC_INNER_PRODUCT)
        t0 = time.perf_counter()
        if cfg.family == "opq_ivfpq":
            # OPQ alternates PQ training and a 1024x1024 SVD; faiss's 50 rounds dominate the whole grid.
            opq: Any = faiss.downcast_VectorTransform(cast(Any, self.index).chain.at(0))
            opq.niter = opq_niter
        if not self.index.is_trained:
            rng = np.random.default_rng(seed)
            sample = base[rng.choice(len(base), min(train_size, len(base)), replace=False)]
            self.index.train(sample)
            del sample  # a copy of up to train_size vectors; it must not count as the index's RSS growth
        self.train_seconds = time.perf_counter() - t0
        self.fixed_bytes = int(faiss.serialize_index(self.index).size)
        t0 = time.perf_counter()
        step = 10_000  # add in chunks so the progress bar moves on the slow builds (HNSW)
        for start in range(0, len(base), step):
            self.index.add(base[start : start + step])
            progress.update(min(step, len(base) - start))
        self.add_seconds = time.perf_counter() - t0
        self.index_bytes = int(faiss.serialize_index(self.index).size)
        self.rss_growth = max(0, process_rss() - rss0)

    def configure(self, params: dict[str, Any]) -> None:
        import faiss

        space = faiss.ParameterSpace()
        for key in ("nprobe", "efSearch"):
            if key in params:
                space.set_index_parameter(self.index, key, params[key])
        self.rerank = int(params.get("rerank", 0))

    def search(self, queries: np.ndarray, k: int, threads: int) -> np.ndarray:
        import faiss

        faiss.omp_set_num_threads(threads)
        if not self.rerank:
            ids: np.ndarray = self.index.search(queries, k)[1]
            return ids
        candidates = self.index.search(queries, self.rerank)[1]
        return exact_rerank(self.base, queries, candidates, k)


def exact_rerank(base: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Re-order each query's candidates by exact inner product and keep the best ``k``."""
    out = np.full((len(queries), k), -1, np.int64)
    step = 64  # bounds the gathered (step, candidates, dim) block to a few tens of MB
    for s in range(0, len(queries), step):
        cand = candidates[s : s + step]
        scores = np.einsum("qd,qcd->qc", queries[s : s + step], base[np.maximum(cand, 0)])
        scores[cand < 0] = -np.inf
        order = np.argsort(-scores, axis=1)[:, :k]
        out[s : s + step] = np.take_along_axis(cand, order, axis=1)
    return out


class NgtIndex(AnnIndex):
    """NGT ANNG, or ONNG made from a denser ANNG (outgoing ``edge_size``, incoming 12 x ``edge_size``)."""

    def __init__(self, cfg: IndexConfig, base: np.ndarray, progress: Any) -> None:
        import ngtpy

        self.tmp = Path(tempfile.mkdtemp(prefix="niteru-ngt-"))
        edge, onng = int(cfg.build["edge_size"]), cfg.build["graph"] == "onng"
        anng = str(self.tmp / "anng")
        t0 = time.perf_counter()
        ngtpy.create(anng, base.shape[1], edge_size_for_creation=edge * 10 if onng else edge, distance_type="L2")
        index = ngtpy.Index(anng, log_disabled=True)
        index.batch_insert(base, num_threads=os.cpu_count() or 1)
        index.save()
        index.close()
        path = anng
        if onng:
            path = str(self.tmp / "onng")
            ngtpy.Optimizer(num_of_outgoings=edge, num_of_incomings=edge * 12, log_disabled=True).execute(anng, path)
            shutil.rmtree(anng)
        self.add_seconds = time.perf_counter() - t0
        progress.update(len(base))
        self.disk_bytes = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
        rss0 = process_rss()
        self.index = ngtpy.Index(path, read_only=True, log_disabled=True)
        self.rss_growth = max(0, process_rss() - rss0)
        # NGT has no in-memory size call. It reads its object and graph files whole into memory, so
        # their size on disk is its footprint; RSS growth here understates it because the allocator
        # reuses what the build (in this process) freed, so it is reported but not used.
        self.index_bytes = self.disk_bytes
        self.epsilon = 0.1

    def configure(self, params: dict[str, Any]) -> None:
        self.epsilon = float(params.get("epsilon", 0.1))

    def search(self, queries: np.ndarray, k: int, threads: int) -> np.ndarray:
        out = np.full((len(queries), k), -1, np.int64)

        def one(i: int) -> None:
            found = self.index.search(queries[i], size=k, epsilon=self.epsilon, with_distance=False)
            out[i, : len(found)] = found

        run_queries(one, len(queries), threads)
        return out

    def close(self) -> None:
        self.index.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def run_queries(fn: Callable[[int], None], n: int, threads: int) -> None:
    """Call ``fn(i)`` for every query, in ``threads`` Python threads (NGT searches one query a call)."""
    if threads <= 1:
        for i in range(n):
            fn(i)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, range(n)))


def build_index(cfg: IndexConfig, base: np.ndarray, run: dict[str, Any], progress: Any) -> AnnIndex:
    if cfg.family == "ngt":
        return NgtIndex(cfg, base, progress)
    return FaissIndex(cfg, base, int(run["train_size"]), int(run["seed"]), progress, int(run["opq_niter"]))
