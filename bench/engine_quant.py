"""Qdrant Edge with quantized image vectors, for ``bench/engines.py --engines quant``.

A variant is ``kind[:parameter]``: ``none``, ``scalar`` (int8), ``product:<compression>`` (4..64),
``binary:<bits>`` (1, 1.5, 2) or ``turbo:<bits>`` (1, 1.5, 2, 4, 8). The collection is made with the
store's own translation of the settings (``niteru.store.quantization.edge_vector_options``: codes pinned
in RAM, float32 originals on disk), the search with the store's own search parameters (rescore,
``--oversampling``).

Each variant is built (load + ``optimize``) in this process, then measured in a child process of its own
(``python bench/engine_quant.py <job.json>``) that opens the built shard, runs the queries and reports its
memory: RSS after the queries minus RSS before the shard was opened, split into anonymous memory (what the
engine holds: codes, HNSW links, id tracker) and file pages (mmapped files, including the originals the
rescoring read; the kernel may drop those under pressure). The engine's own figure is the size of the
quantized codes (``quantized.data``) and of the float32 originals (``matrix.dat``) of the image vector.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from engine_backends import Edge, K, folder_bytes

REPO = Path(__file__).resolve().parent.parent


def settings_of(variant: str, oversampling: float) -> Any:
    """The store's settings for a variant (the bench uses the store's own quantization code)."""
    from niteru.settings import Settings

    kind, _, parameter = variant.partition(":")
    changes: dict[str, Any] = {"quantization_image": kind, "quantization_image_oversampling": oversampling}
    if kind == "product" and parameter:
        changes["quantization_pq_compression"] = int(parameter)
    if kind == "binary" and parameter:
        changes["quantization_binary_bits"] = parameter
    if kind == "turbo" and parameter:
        changes["quantization_turbo_bits"] = parameter
    return Settings(**changes)


class QuantEdge(Edge):
    """``Edge`` with the image vector quantized as the store would for ``variant``."""

    def __init__(self, root: Path, hnsw_ef: int, variant: str, oversampling: float) -> None:
        from niteru.store.quantization import configured

        super().__init__(root, hnsw_ef)
        self.variant = variant
        self.quant = configured(settings_of(variant, oversampling)).get("image")

    def vector_params(self, dim: int) -> Any:
        import qdrant_edge as qe

        from niteru.store.quantization import edge_vector_options

        return qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine, **edge_vector_options(self.quant))

    def search_params(self) -> Any:
        import qdrant_edge as qe

        if self.quant is None:
            return qe.SearchParams(hnsw_ef=self.hnsw_ef, exact=self.exact)
        tuning = qe.QuantizationSearchParams(rescore=self.quant.rescore, oversampling=self.quant.oversampling)
        return qe.SearchParams(hnsw_ef=self.hnsw_ef, exact=self.exact, quantization=tuning)


def image_bytes(root: Path) -> dict[str, int]:
    """Bytes of the image vector's quantized codes and float32 originals, over every segment."""
    out = {"codes": 0, "originals": 0}
    for storage in root.glob("segments/*/vector_storage-image"):
        out["codes"] += sum(f.stat().st_size for f in storage.glob("quantized.data"))
        out["originals"] += sum(f.stat().st_size for f in storage.glob("matrix.dat"))
    return out


def memory_kb() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0])
    return fields


def build(
    variant: str, root: Path, x: np.ndarray, cats: list[str], hnsw_ef: int, oversampling: float
) -> dict[str, Any]:
    """Load and index one variant; the shard is closed afterwards, for the child to open."""
    engine = QuantEdge(root, hnsw_ef, variant, oversampling)
    load = engine.load(x, cats)
    index = engine.optimize()
    engine.close()
    return {"load_s": load, "build_s": index, "disk_mb": folder_bytes(root) / 1e6, **image_bytes(root)}


def measure_in_child(job: dict[str, Any]) -> dict[str, Any]:
    """Run ``job`` (shard, queries, truth) in a fresh Python: its memory is that of this variant alone."""
    path = Path(job["root"]).with_suffix(".job.json")
    path.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'bench'}"}
    done = subprocess.run(
        [sys.executable, str(Path(__file__)), str(path)], capture_output=True, text=True, check=False, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"{job['variant']}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def child(job: dict[str, Any]) -> dict[str, Any]:
    import qdrant_edge as qe  # imported before the baseline: the library is not the variant's memory

    before = memory_kb()
    engine = QuantEdge(Path(job["root"]), job["hnsw_ef"], job["variant"], job["oversampling"])
    t0 = time.perf_counter()
    engine.shard = qe.EdgeShard.load(job["root"])
    engine.shard.count(qe.CountRequest(exact=True))
    reopen = time.perf_counter() - t0
    out: dict[str, Any] = {"reopen_s": reopen}
    for case, (queries, cats, truth) in job["cases"].items():
        engine.similar(queries[0], cats[0])  # warm-up
        runs = []
        for _ in range(job["runs"]):
            times, recalls = [], []
            for i, cat, want in zip(queries, cats, truth, strict=True):
                t = time.perf_counter()
                got = engine.similar(i, cat)
                times.append((time.perf_counter() - t) * 1000)
                recalls.append(len(set(got) & set(want)) / K)
            runs.append((np.percentile(times, 50), np.percentile(times, 95), np.mean(recalls)))
        out[case] = {m: float(np.median([r[j] for r in runs])) for j, m in enumerate(("p50", "p95", "recall"))}
    after = memory_kb()
    out["rss_mb"] = (after["VmRSS"] - before["VmRSS"]) / 1024
    out["anon_mb"] = (after["RssAnon"] - before["RssAnon"]) / 1024
    out["file_mb"] = (after["RssFile"] - before["RssFile"]) / 1024
    engine.close()
    return out


def run_variant(
    variant: str,
    work: Path,
    x: np.ndarray,
    cats: list[str],
    qsets: dict[str, Any],
    runs: int,
    hnsw_ef: int,
    oversampling: float,
) -> dict[str, Any]:
    root = work / f"quant-{variant.replace(':', '-')}"
    built = build(variant, root, x, cats, hnsw_ef, oversampling)
    cases = {
        case: (queries, [cats[i] if case == "category" else None for i in queries], [sorted(t) for t in truth])
        for case, (queries, truth) in qsets.items()
    }
    job = {"root": str(root), "variant": variant, "hnsw_ef": hnsw_ef, "oversampling": oversampling, "runs": runs}
    measured = measure_in_child(job | {"cases": cases})
    row = {"engine": f"edge, HNSW, {variant}", "variant": variant, **built, **measured}
    row["bytes_per_vector"] = (row["codes"] or row["originals"]) / len(x)
    for case in qsets:
        r = row[case]
        print(
            f"  {row['engine']:<28} {case:<9} p50 {r['p50']:7.2f}  p95 {r['p95']:7.2f} ms  recall@10 {r['recall']:.3f}"
            f"  {row['bytes_per_vector']:7.0f} B/vector  RSS +{row['rss_mb']:.0f} MB (anon {row['anon_mb']:.0f})",
            flush=True,
        )
    return row


if __name__ == "__main__":
    print(json.dumps(child(json.loads(Path(sys.argv[1]).read_text()))))
