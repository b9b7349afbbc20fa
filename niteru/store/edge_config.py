"""What niteru sets in an Edge shard's config beyond its vectors' sizes and quantization (``quantization.py``).

The graph of a narrow vector. Below its full-scan threshold (Qdrant's default: 10,000 KB of the vector in a
segment) a search scans every point, graph or not. Counted in KB, that is 10,000 text vectors (256-d) but
20,000 joint ones (128-d): at 18k products every joint search was a scan, 0.47 ms against 0.18 by its graph,
with the same top 10 in 1,000 similar queries (bench/results/api_latency-threads.md). A vector narrower than
256-d gets the threshold of ``FULL_SCAN_MAX_POINTS`` points; the others keep Edge's. A collection keeps what
it was created with: a change reaches a store with its next rebuild.

The search threads (``edge_search_threads``), given at creation and set again at every load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FULL_SCAN_MAX_POINTS = 10_000
EDGE_DEFAULT_FULL_SCAN_KB = 10_000
# Edge's own graph parameters (a per-vector config replaces the shard's whole, so they are repeated).
EDGE_DEFAULT_M, EDGE_DEFAULT_EF_CONSTRUCT = 16, 100


def graph_options(dim: int) -> dict[str, Any]:
    """Keyword arguments of ``qdrant_edge.EdgeVectorParams`` for a ``dim``-d vector ({}: Edge's defaults)."""
    kb = FULL_SCAN_MAX_POINTS * dim * 4 // 1024
    if kb >= EDGE_DEFAULT_FULL_SCAN_KB:
        return {}
    import qdrant_edge as qe

    config = qe.HnswIndexConfig(m=EDGE_DEFAULT_M, ef_construct=EDGE_DEFAULT_EF_CONSTRUCT, full_scan_threshold=kb)
    return {"hnsw_config": config}


def set_search_threads(shard_dir: Path, threads: int | None) -> None:
    """Make a shard's own config file name ``threads`` search threads (None: none, so Edge derives them from
    the CPUs), before the shard is loaded. Why the file: ``EdgeShard.load(path, config)`` wants the whole config
    (vectors, quantization, optimizers), which qdrant_edge cannot read back, and keeps it on disk; the count
    is read from this file at every load, and a count left in it would outlive the setting that put it there."""
    path = shard_dir / "edge_config.json"
    config = json.loads(path.read_text())
    if config.get("max_search_threads") == threads:
        return
    if threads is None:
        del config["max_search_threads"]
    else:
        config["max_search_threads"] = threads
    tmp = shard_dir / ".edge_config.json.tmp"
    with tmp.open("w") as f:
        json.dump(config, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def open_shard(shard_dir: Path, threads: int | None) -> Any:
    """Load the Edge shard in ``shard_dir`` with ``threads`` search threads (None: Edge's default)."""
    import qdrant_edge as qe

    set_search_threads(shard_dir, threads)
    return qe.EdgeShard.load(str(shard_dir))
