"""Does a fused (prefetch + formula/fusion) query in Qdrant Edge run in parallel across threads?

A minimal reproduction against ``qdrant_edge`` alone (no niteru code): one shard of random unit vectors,
two named vectors (image 1024-d, text 256-d) like niteru's, indexed (HNSW). Threads share the one open
shard and run the same total number of queries; each query kind is timed at 1, 2 and 4 threads:

- ``nearest image`` / ``nearest text``: a plain nearest query (limit 50);
- ``nearest both (batch)``: the two in one ``query_batch`` call;
- ``fused wsum``: niteru's auto query, two prefetches (50 each) each rescoring the union of both, then
  a formula ``w0 * $score[0] + w1 * $score[1]``;
- ``fused rrf``: the two prefetches fused by RRF (no formula, no rescoring);
- ``rescore``: one prefetch (image, 50) rescored by the text vector: the rescoring stage of ``fused wsum``;
- ``id-restricted``: a nearest query restricted to 50 ids (``HasIdCondition``), the same scores asked
  for as a plain query.

If a kind does not gain from threads while plain nearest queries do, that call holds the GIL (or some
lock) for its whole run. Medians of ``--runs`` runs; the load average is printed because the machine is
shared: ratios between kinds measured in the same run are what count.

    python bench/edge_fused_threads.py --points 18000 --queries 400 --out bench/results/edge_fused_threads.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DIMS = {"image": 1024, "text": 256}
LIMIT = 50


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def build(folder: str, n: int, rng: np.random.Generator) -> tuple[Any, dict[str, np.ndarray]]:
    import qdrant_edge as qe

    config = qe.EdgeConfig(
        vectors={k: qe.EdgeVectorParams(size=d, distance=qe.Distance.Cosine) for k, d in DIMS.items()}
    )
    shard = qe.EdgeShard.create(folder, config)
    shard.update(qe.UpdateOperation.create_field_index("category", qe.PayloadSchemaType.Keyword))
    vectors = {k: unit(rng, n, d) for k, d in DIMS.items()}
    for start in range(0, n, 1000):
        points = [
            qe.Point(i, {k: v[i].tolist() for k, v in vectors.items()}, {"category": f"c{i % 5}"})
            for i in range(start, min(n, start + 1000))
        ]
        shard.update(qe.UpdateOperation.upsert_points(points))
    t0 = time.perf_counter()
    shard.optimize()
    print(f"indexed {n} points in {time.perf_counter() - t0:.0f} s: {shard.info()}", flush=True)
    return shard, vectors


def requests(shard: Any, q: dict[str, np.ndarray], ids: list[int]) -> dict[str, Callable[[], Any]]:
    import qdrant_edge as qe

    params = qe.SearchParams(hnsw_ef=128)
    img, txt = q["image"].tolist(), q["text"].tolist()

    def nearest(vec: list[float], using: str, filt: Any = None, limit: int = LIMIT, how: Any = params) -> Any:
        return qe.QueryRequest(limit=limit, query=qe.Query.Nearest(vec, using=using), filter=filt, params=how)

    inner = [
        qe.Prefetch(limit=LIMIT, query=qe.Query.Nearest(img, using="image"), params=params),
        qe.Prefetch(limit=LIMIT, query=qe.Query.Nearest(txt, using="text"), params=params),
    ]
    outer = [
        qe.Prefetch(limit=2 * LIMIT, query=qe.Query.Nearest(v, using=u), prefetches=inner, params=params)
        for v, u in ((img, "image"), (txt, "text"))
    ]
    terms = [
        qe.Expression.Mult([qe.Expression.Constant(w), qe.Expression.Variable(f"$score[{i}]")])
        for i, w in enumerate((0.7, 0.3))
    ]
    wsum = qe.QueryRequest(limit=10, prefetches=outer, query=qe.Formula(qe.Expression.Sum(terms)))
    # The stub types Fusion.Rrf as its own class, not a Fusion.
    rrf = qe.QueryRequest(limit=10, prefetches=inner, query=qe.Fusion.Rrf(k=60))  # type: ignore[arg-type]
    # The rescoring stage alone: the image list's 50 candidates scored by the text vector.
    rescore = qe.QueryRequest(limit=LIMIT, prefetches=inner[:1], query=qe.Query.Nearest(txt, using="text"))
    batch = qe.QueryBatchRequest([nearest(img, "image"), nearest(txt, "text")])
    exact = qe.SearchParams(exact=True)  # as niteru.store.local_fusion asks for missing scores
    restricted = nearest(txt, "text", qe.Filter(must=[qe.HasIdCondition(set(ids))]), len(ids), exact)
    return {
        "nearest image": lambda: shard.query(nearest(img, "image")),
        "nearest text": lambda: shard.query(nearest(txt, "text")),
        "nearest both (batch)": lambda: shard.query_batch(batch),
        "fused wsum": lambda: shard.query(wsum),
        "fused rrf": lambda: shard.query(rrf),
        "rescore 50 prefetched by text": lambda: shard.query(rescore),
        "text scores of 50 ids (id-restricted exact query)": lambda: shard.query(restricted),
    }


def rate(calls: list[Callable[[], Any]], threads: int) -> float:
    """Queries per second with ``threads`` threads sharing the calls (started together on a barrier)."""
    chunks = [calls[i::threads] for i in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def work(chunk: list[Callable[[], Any]]) -> None:
        barrier.wait()
        for call in chunk:
            call()

    workers = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    barrier.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    return len(calls) / (time.perf_counter() - t0)


def gil_free(calls: list[Callable[[], Any]]) -> float:
    """How much a pure-Python thread gets done while ``calls`` run in this one, relative to while this
    one sleeps: about 1 when the calls release the GIL, about 0 when they hold it for their whole run."""
    count, stop = [0], threading.Event()

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        t0, c0 = time.perf_counter(), count[0]
        for call in calls:
            call()
        busy_t, busy_c = time.perf_counter() - t0, count[0] - c0
        t0, c0 = time.perf_counter(), count[0]
        time.sleep(busy_t)
        idle_t, idle_c = time.perf_counter() - t0, count[0] - c0
    finally:
        stop.set()
        spinner.join()
    return (busy_c / busy_t) / (idle_c / idle_t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=18000)
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import qdrant_edge as qe

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        shard, vectors = build(folder, args.points, rng)
        picks = rng.choice(args.points, args.queries, replace=False)
        per_query = [
            requests(shard, {k: v[i] for k, v in vectors.items()}, rng.choice(args.points, LIMIT).tolist())
            for i in picks
        ]
        kinds = list(per_query[0])
        table: dict[str, dict[int, float]] = {k: {} for k in kinds}
        free: dict[str, float] = {}
        loads = []
        for kind in kinds:
            calls = [q[kind] for q in per_query]
            for c in calls[:20]:  # warm-up
                c()
            for threads in (1, 2, 4):
                loads.append(os.getloadavg()[0])
                table[kind][threads] = statistics.median(rate(calls, threads) for _ in range(args.runs))
            free[kind] = statistics.median(gil_free(calls) for _ in range(args.runs))
            print(
                f"{kind:<24} " + "  ".join(f"{t} thr {table[kind][t]:7.0f} q/s" for t in (1, 2, 4)),
                f"GIL-free {free[kind]:.2f}",
                flush=True,
            )
        shard.close()
    lines = [
        "# Edge: fused queries across threads (bench/edge_fused_threads.py)",
        "",
        f"qdrant-edge-py {getattr(qe, '__version__', '0.9')}, Python {sys.version.split()[0]}, {os.cpu_count()} cores "
        f"shared with other work (1-min load average {min(loads):.1f}-{max(loads):.1f} during the run: absolute "
        "figures are noisy, the ratios between rows measured in the same run are what count). "
        f"{args.points} random unit vectors (image 1024-d, text 256-d), HNSW-indexed, one shard shared by the "
        f"threads; {args.queries} queries per cell, median of {args.runs} runs; prefetch limit {LIMIT}, hnsw_ef 128.",
        "",
        "| query | ms per query (1 thread) | 1 thread q/s | 2 threads q/s | 4 threads q/s | 4 threads / 1 | GIL-free |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in kinds:
        t = table[kind]
        lines.append(
            f"| {kind} | {1000 / t[1]:.2f} | {t[1]:.0f} | {t[2]:.0f} | {t[4]:.0f} | {t[4] / t[1]:.2f}x "
            f"| {free[kind]:.2f} |"
        )
    lines += [
        "",
        "GIL-free: the rate of a pure-Python counting thread while one thread runs the queries, over its rate",
        "while that thread sleeps (1: the call releases the GIL for its run; 0: it holds it throughout).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
