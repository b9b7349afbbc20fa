"""``niteru experiments pq``: recall, speed and memory of ANN indexes against exact search.

Steps: load the vectors (``load_vectors``), L2-normalise them, hold out a fixed share as queries
(removed from the base), compute the ground truth with faiss ``IndexFlatIP``, then build every
configuration of the YAML grid and sweep its search parameters. Each row gets recall@1, recall@10,
queries/s on one thread and on all cores (median of ``run.repeats`` timed passes over the query
set), training and build time, and bytes per vector (the index's own serialised size, NGT's RSS
growth on opening it, and the process's RSS growth while building). ``report.write_report`` turns
the rows into CSV/JSON, a Pareto-front Markdown table and two plots.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from experiments.config import ConfigError, IndexConfig, expand, load_config
from niteru.settings import Settings

log = logging.getLogger(__name__)


def load_vectors(source: str, settings: Settings | None = None) -> np.ndarray:
    """(n, d) float32 vectors from a source name: a path to an ``.npy`` file, or ``store:image`` /
    ``store:text``, every stored product's vector of that name from the live collection of the store the
    settings name (the embedded store must not be open in another process)."""
    if source.startswith("store:"):
        return export_from_store(source.removeprefix("store:"), settings or Settings())
    path = Path(source)
    if path.suffix != ".npy" or not path.is_file():
        raise ConfigError(f"{source}: expected an existing .npy file of shape (n, d)")
    vectors = np.load(path, mmap_mode="r")
    if vectors.ndim != 2 or len(vectors) < 2:
        raise ConfigError(f"{source}: expected shape (n, d) with n >= 2, got {vectors.shape}")
    return np.ascontiguousarray(vectors, dtype=np.float32)


def export_from_store(name: str, settings: Settings) -> np.ndarray:
    from tqdm import tqdm

    from niteru.store import VECTOR_NAMES, StoreError, open_store

    if name not in VECTOR_NAMES:
        raise ConfigError(f"store:{name}: the store has vectors {', '.join(VECTOR_NAMES)}")
    rows: list[np.ndarray] = []
    try:
        with open_store(settings) as store, tqdm(total=store.count(), desc=f"export {name}", unit="vec") as bar:
            for batch in store.scroll(batch_size=1024, with_vectors=True):
                rows.extend(p.vectors[name] for p in batch)
                bar.update(len(batch))
    except StoreError as exc:
        raise ConfigError(f"store:{name}: {exc}") from exc
    if len(rows) < 2:
        raise ConfigError(f"store:{name}: the store holds {len(rows)} products; need at least 2")
    return np.stack(rows).astype(np.float32, copy=False)


def split_queries(vectors: np.ndarray, share: float, max_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalise, then hold out ``share`` of the vectors (at most ``max_queries``) as queries."""
    if not 0 < share < 1:
        raise ConfigError(f"data.query_share={share} must be between 0 and 1")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-12)
    n_q = max(1, min(max_queries, round(len(vectors) * share)))
    perm = np.random.default_rng(seed).permutation(len(vectors))
    queries = np.ascontiguousarray(vectors[np.sort(perm[:n_q])])
    base = np.ascontiguousarray(vectors[np.sort(perm[n_q:])])
    return base, queries


def ground_truth(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    ids: np.ndarray = index.search(queries, k)[1]
    return ids


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of the true top-k found in the returned top-k (recall@1: the true nearest is first)."""
    hits = sum(len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (k * len(truth))


def timed_qps(index: Any, queries: np.ndarray, k: int, threads: int, repeats: int) -> tuple[float, np.ndarray]:
    """Median queries/s over ``repeats`` passes over the whole query set, and the last pass's ids."""
    times: list[float] = []
    ids = np.empty((0, k), np.int64)
    for _ in range(repeats):
        t0 = time.perf_counter()
        ids = index.search(queries, k, threads)
        times.append(time.perf_counter() - t0)
    return len(queries) / max(statistics.median(times), 1e-9), ids


def measure(
    cfg: IndexConfig, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, run: dict[str, Any], progress: Any
) -> list[dict[str, Any]]:
    """Build one configuration and return a row per search setting."""
    from experiments.indexes import build_index

    k, dim, cores = truth.shape[1], base.shape[1], os.cpu_count() or 1
    index = build_index(cfg, base, run, progress)
    rows: list[dict[str, Any]] = []
    try:
        for params in cfg.searches:
            index.configure(params)
            qps_1, _ = timed_qps(index, queries, k, 1, int(run["repeats"]))
            qps_all, found = timed_qps(index, queries, k, cores, int(run["repeats"]))
            rerank_bytes = 4 * dim if params.get("rerank") else 0
            rows.append(
                {
                    "family": cfg.family,
                    "config": " ".join([cfg.name, *(f"{k_}={v}" for k_, v in params.items())]),
                    **{f"build.{k_}": v for k_, v in cfg.build.items()},
                    **{f"search.{k_}": v for k_, v in params.items()},
                    "n_base": len(base),
                    "n_queries": len(queries),
                    "dim": dim,
                    "recall@1": recall(found, truth, 1),
                    "recall@10": recall(found, truth, min(10, k)),
                    "qps_1thread": qps_1,
                    f"qps_{cores}threads": qps_all,
                    "train_s": index.train_seconds,
                    "build_s": index.add_seconds,
                    "bytes_per_vector": index.index_bytes / len(base),
                    # The cost of one more vector: what matters at millions, where fixed parts vanish.
                    "marginal_bytes_per_vector": (index.index_bytes - index.fixed_bytes) / len(base),
                    "fixed_bytes": index.fixed_bytes,
                    "rerank_bytes_per_vector": rerank_bytes,
                    "total_bytes_per_vector": index.index_bytes / len(base) + rerank_bytes,
                    "disk_bytes_per_vector": index.disk_bytes / len(base) if index.disk_bytes else None,
                    "rss_growth_bytes_per_vector": index.rss_growth / len(base),
                    "compression_vs_float32": 4 * dim / (index.index_bytes / len(base) + rerank_bytes),
                }
            )
    finally:
        index.close()
        del index
        gc.collect()
    return rows


def run_experiment(source: str, config_path: Path, overrides: list[str], out: Path | None) -> Path:
    """Run the whole grid and write the report; returns the results folder."""
    # OpenMP threads that spin while waiting starve each other on a shared 2-core machine; this must be
    # set before faiss (and its OpenMP runtime) is first imported in the process.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from tqdm import tqdm

    from experiments.report import write_report

    config = load_config(config_path, overrides)
    load_start = os.getloadavg()
    data, run = dict(config.get("data", {})), dict(config.get("run", {}))
    run = {"repeats": 3, "train_size": 50_000, "seed": 0, "opq_niter": 50, **run}
    k = int(data.get("k", 10))
    vectors = load_vectors(source)
    base, queries = split_queries(
        vectors, float(data.get("query_share", 0.05)), int(data.get("max_queries", 1000)), int(run["seed"])
    )
    del vectors
    if k > len(base):
        raise ConfigError(f"data.k={k} is larger than the base ({len(base)} vectors)")
    configs = expand(config, base.shape[1], len(base))  # validate everything before any slow work
    truth = ground_truth(base, queries, k)
    out = out or Path("data/experiments") / f"pq-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "rows.partial.jsonl"
    partial.unlink(missing_ok=True)
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(configs) * len(base), desc="build+search", unit="vec", unit_scale=True) as progress:
        for cfg in configs:
            progress.set_postfix_str(cfg.name)
            new_rows = measure(cfg, base, queries, truth, run, progress)
            rows.extend(new_rows)
            # Rows so far, one JSON a line: a long run that is stopped still leaves its numbers.
            with partial.open("a", encoding="utf-8") as f:
                f.writelines(json.dumps(r, default=str) + "\n" for r in new_rows)
    meta = {
        "source": source,
        "config": config,
        "overrides": overrides,
        "n_base": len(base),
        "n_queries": len(queries),
        "dim": base.shape[1],
        "k": k,
        "cores": os.cpu_count(),
        "load_average_at_start": load_start,
        "load_average_at_end": os.getloadavg(),
        "finished": datetime.now().isoformat(timespec="seconds"),
    }
    write_report(rows, meta, out)
    partial.unlink(missing_ok=True)
    return out
