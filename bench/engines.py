"""Vector engines side by side on real MobileNet vectors: qdrant-client's local mode, Qdrant Edge before
its index is built (exact scan) and after (HNSW), and faiss flat, on

- ``catalog``: the 13,367 catalog-dev image vectors (``data/vectors/catalog.npy``, ``niteru experiments
  vectors --set catalog``);
- ``100k``: 100,000 vectors of ``data/vectors/augmented.npy`` (8 augmentations of each image; each
  takes its product's category). Without that file: the catalog vectors, each 8 times with Gaussian noise
  (sigma 0.02 per coordinate, renormalised), said so in the results.

Per engine and set: load time, index build time, reopen time, disk, and for ``similar`` (the stored
vector of a product, its 10 nearest other products), unfiltered and in the product's category, latency
p50/p95 and recall@10 against exact search (numpy). Medians of ``--runs`` runs. Writes
bench/results/engines.{json,md}.

``--engines quant`` measures Edge with the image vector quantized instead (``engine_quant.py``: each
variant of ``--quant``, its codes' bytes and a fresh process's RSS beside latency and recall); ``--out``
names the results file:

    .venv/bin/python bench/engines.py            # make bench-engines
    .venv/bin/python bench/engines.py --sets catalog --engines quant --out quantization-13k
    .venv/bin/python bench/engines.py --sets 100k --engines quant --quant none scalar binary:2 turbo:2 turbo:4 \
        --out quantization-100k
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine_backends import Edge, FaissFlat, K, QdrantLocal, folder_bytes  # noqa: E402  (bench/ is on sys.path as a script)
from engine_quant import run_variant  # noqa: E402

from niteru.catalog import read_catalog  # noqa: E402

ENGINES = ("qdrant-local", "edge", "faiss", "quant")
# Quantized image vectors (engine_quant.py): the store's kinds, each at the settings' default and at
# the setting that makes the codes at least 8x smaller than float32 where the default does not.
VARIANTS = ["none", "scalar", "product:16", "product:32", "binary:1", "binary:2", "turbo:2", "turbo:4"]

RESULTS = REPO / "bench" / "results"


def load_set(name: str, vectors: Path, catalog: Path, size: int) -> tuple[np.ndarray, list[str], str]:
    category = {r.product_id: r.category for r in read_catalog(catalog)}
    if name == "catalog":
        x = np.load(vectors / "catalog.npy")
        ids = json.loads((vectors / "catalog.ids.json").read_text())["ids"]
        return x.astype(np.float32), [category[i.split("#")[0]] for i in ids], "catalog-dev image vectors"
    if (vectors / "augmented.npy").is_file():
        x = np.load(vectors / "augmented.npy", mmap_mode="r")[:size]
        ids = json.loads((vectors / "augmented.ids.json").read_text())["ids"][:size]
        return np.ascontiguousarray(x, np.float32), [category[i.split("#")[0]] for i in ids], "augmented images"
    base = np.load(vectors / "catalog.npy").astype(np.float32)
    ids = json.loads((vectors / "catalog.ids.json").read_text())["ids"]
    rng = np.random.default_rng(0)
    rows = np.arange(size) % len(base)
    x = base[rows] + rng.normal(0, 0.02, size=(size, base.shape[1])).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cats = [category[ids[r].split("#")[0]] for r in rows]
    return x, cats, "catalog vectors + Gaussian noise (augmented.npy was not ready)"


def exact_truth(x: np.ndarray, cats: np.ndarray, queries: list[int], filtered: bool) -> list[set[int]]:
    truth = []
    for i in queries:
        scores = x @ x[i]
        scores[i] = -np.inf
        if filtered:
            scores[cats != cats[i]] = -np.inf
        truth.append(set(np.argsort(-scores, kind="stable")[:K].tolist()))
    return truth


def measure(
    engine: Any, queries: list[int], cats: list[str], filtered: bool, truth: list[set[int]]
) -> dict[str, float]:
    times, recalls = [], []
    for i, want in zip(queries, truth, strict=True):
        t0 = time.perf_counter()
        got = engine.similar(i, cats[i] if filtered else None)
        times.append((time.perf_counter() - t0) * 1000)
        recalls.append(len(set(got) & want) / len(want))
    return {
        "p50": float(np.percentile(times, 50)),
        "p95": float(np.percentile(times, 95)),
        "recall": float(np.mean(recalls)),
    }


def run_engine(
    engine: Any,
    label: str,
    x: np.ndarray,
    cats: list[str],
    qsets: dict[str, Any],
    runs: int,
    build: float | None,
    load: float,
) -> dict[str, Any]:
    row: dict[str, Any] = {"engine": label, "load_s": load, "build_s": build}
    for case, (queries, truth) in qsets.items():
        engine.similar(queries[0], cats[queries[0]] if case == "category" else None)  # warm-up
        per_run = [measure(engine, queries, cats, case == "category", truth) for _ in range(runs)]
        row[case] = {m: float(np.median([r[m] for r in per_run])) for m in ("p50", "p95", "recall")}
        r = row[case]
        print(
            f"  {label:<24} {case:<9} p50 {r['p50']:8.2f}  p95 {r['p95']:8.2f} ms  recall@10 {r['recall']:.3f}",
            flush=True,
        )
    return row


def bench_set(name: str, args: argparse.Namespace) -> dict[str, Any]:
    x, cats, source = load_set(name, args.vectors, args.catalog, args.size)
    print(f"{name}: {len(x):,} vectors ({source})", flush=True)
    rng = random.Random(0)
    queries = rng.sample(range(len(x)), args.queries)
    c = np.array(cats)
    qsets = {case: (queries, exact_truth(x, c, queries, case == "category")) for case in ("all", "category")}
    few = {case: (qs[: args.local_queries], t[: args.local_queries]) for case, (qs, t) in qsets.items()}
    work = args.work / name
    rows, quant = [], []
    if "qdrant-local" in args.engines:
        local = QdrantLocal(work / "qdrant-local")
        load = local.load(x, cats)
        rows.append(
            run_engine(local, "qdrant local mode", x, cats, few if len(x) > 20_000 else qsets, args.runs, None, load)
            | {"reopen_s": local.reopen(), "disk_mb": folder_bytes(local.root) / 1e6}
        )
        local.close()
    if "edge" in args.engines:
        edge = Edge(work / "edge", args.hnsw_ef)
        load = edge.load(x, cats)
        edge.exact = True
        rows.append(
            run_engine(edge, "edge, exact (no index yet)", x, cats, qsets, args.runs, None, load)
            | {"reopen_s": edge.reopen(), "disk_mb": folder_bytes(edge.root) / 1e6}
        )
        build = edge.optimize()
        edge.exact = False
        rows.append(
            run_engine(edge, f"edge, HNSW (ef {args.hnsw_ef})", x, cats, qsets, args.runs, build, load)
            | {"reopen_s": edge.reopen(), "disk_mb": folder_bytes(edge.root) / 1e6}
        )
        edge.close()
    if "faiss" in args.engines:
        flat = FaissFlat(work / "faiss")
        load = flat.load(x, cats)
        rows.append(
            run_engine(flat, "faiss flat", x, cats, qsets, args.runs, None, load)
            | {"reopen_s": flat.reopen(), "disk_mb": folder_bytes(flat.root) / 1e6}
        )
    if "quant" in args.engines:
        for variant in args.quant:
            quant.append(run_variant(variant, work, x, cats, qsets, args.runs, args.hnsw_ef, args.oversampling))
            shutil.rmtree(work / f"quant-{variant.replace(':', '-')}", ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return {"set": name, "vectors": len(x), "dim": int(x.shape[1]), "source": source, "rows": rows, "quant": quant}


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Vector engines (bench/engines.py)",
        "",
        f"Machine: {meta['machine']}. `similar` = the stored vector of a product, then its {K} nearest other products "
        f"(unfiltered, or in the product's category); {meta['queries']} queries per case ({meta['local_queries']} for "
        f"qdrant local mode above 20,000 vectors), median of {meta['runs']} runs; recall@10 against exact numpy "
        "search. "
        "Load = inserting the vectors; build = Edge's HNSW index (in-process `optimize`; the store runs it in a child "
        "process on a copy while queries go on).",
    ]
    for r in results:
        lines += ["", f"## {r['set']}: {r['vectors']:,} x {r['dim']}-d ({r['source']})"]
        if r.get("quant"):
            lines += quant_table(r["quant"], r["dim"])
        if not r["rows"]:
            continue
        lines += [
            "",
            "| engine | p50 ms | p95 ms | recall@10 | +category p50 | p95 | recall@10 "
            "| load s | build s | reopen s | disk MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in r["rows"]:
            a, c = row["all"], row["category"]
            build = f"{row['build_s']:.1f}" if row["build_s"] is not None else "-"
            lines.append(
                f"| {row['engine']} | {a['p50']:.2f} | {a['p95']:.2f} | {a['recall']:.3f} | {c['p50']:.2f} | "
                f"{c['p95']:.2f} | {c['recall']:.3f} | {row['load_s']:.1f} | {build} | {row['reopen_s']:.2f} | "
                f"{row['disk_mb']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def quant_table(rows: list[dict[str, Any]], dim: int) -> list[str]:
    lines = [
        "",
        "| image vector | B/vector in RAM | x less than float32 | RSS MB (anon / file) | p50 ms | p95 ms | recall@10 "
        "| +category p50 | p95 | recall@10 | build s | disk MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        a, c = row["all"], row["category"]
        lines.append(
            f"| {row['variant']} | {row['bytes_per_vector']:.0f} | {dim * 4 / row['bytes_per_vector']:.1f} | "
            f"{row['rss_mb']:.0f} ({row['anon_mb']:.0f} / {row['file_mb']:.0f}) | {a['p50']:.2f} | {a['p95']:.2f} | "
            f"{a['recall']:.3f} | {c['p50']:.2f} | {c['p95']:.2f} | {c['recall']:.3f} | {row['build_s']:.1f} | "
            f"{row['disk_mb']:.0f} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["catalog", "100k"], choices=["catalog", "100k"])
    ap.add_argument("--vectors", type=Path, default=REPO / "data" / "vectors")
    ap.add_argument("--catalog", type=Path, default=REPO.parent / "shared" / "data" / "catalog-dev")
    ap.add_argument("--work", type=Path, default=REPO / "data" / "bench-engines")
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--local-queries", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hnsw-ef", type=int, default=128)
    # quant is asked for by name: its variants (PQ's training above all) take far longer than the rest.
    ap.add_argument("--engines", nargs="+", default=["qdrant-local", "edge", "faiss"], choices=ENGINES)
    ap.add_argument("--quant", nargs="+", default=VARIANTS, help="quant variants: kind[:parameter]")
    ap.add_argument("--oversampling", type=float, default=2.0, help="quant: candidates per result, then rescored")
    ap.add_argument("--out", default="engines", help="results file name in bench/results (without suffix)")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    results = [bench_set(name, args) for name in args.sets]
    meta = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; 1-min load "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (above ~1, other work shared the cores)",
        "queries": args.queries,
        "local_queries": args.local_queries,
        "runs": args.runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"meta": meta, "sets": results}, indent=2))
    text = markdown(results, meta)
    (RESULTS / f"{args.out}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
