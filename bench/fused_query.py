"""The fused (auto) similar query on the Edge store: Edge's own fused query (old) against plain queries
fused in the service (new, ``niteru.store.local_fusion``), side by side in one process.

Opens the store of ``NITERU_DATA_DIR`` (an ingested catalog; copy /work/data-shared rather than ingest),
picks ``--queries`` random products and runs ``similar_products`` (the code path of the API, without
HTTP) for each, in the modes auto (wsum), auto + the product's category as filter, hybrid, and image
(one vector: the reference), both ways, at 1, 2 and 4 threads sharing the one open store. Old and new
alternate run by run so that the machine's load falls on both alike; medians of ``--runs`` runs, the load
average printed with each. Also:

- agreement: the share of queries whose top 10 are the same products in the same order both ways, and
  the largest score difference;
- where a new auto query's time goes (candidate lists, rescoring, payloads) and what the rescoring would
  cost by reading the candidates' vectors into Python instead of an id-restricted exact query.

    NITERU_DATA_DIR=/work/data-qpath python bench/fused_query.py --out bench/results/fused_query.md
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from niteru.fusion import WeightedSum  # noqa: E402
from niteru.routing import Mode  # noqa: E402
from niteru.settings import Settings  # noqa: E402
from niteru.similar import SimilarOptions, similar_products  # noqa: E402
from niteru.store import SearchFilter, open_store  # noqa: E402
from niteru.store.edge import EdgeProductStore  # noqa: E402
from niteru.store.plan import QueryPlan  # noqa: E402

CASES: dict[str, Callable[[str], SimilarOptions]] = {
    "auto (wsum)": lambda c: SimilarOptions(k=10, mode=Mode.auto),
    "auto + category": lambda c: SimilarOptions(k=10, mode=Mode.auto, filter=SearchFilter(category=c)),
    "image (one vector)": lambda c: SimilarOptions(k=10, mode=Mode.image),
}
THREADS = (1, 2, 4)


def rate(
    call: Callable[[str, str], Any], picks: list[tuple[str, str]], threads: int
) -> tuple[float, list[float], float]:
    """Queries per second over ``picks`` shared by ``threads`` threads, each query's latency (ms), and the
    CPU time this process spent per query (ms, all its threads: Edge's search pool too). CPU time is what
    other processes' load does not inflate (much): on a busy machine it is the steadiest cost measure."""
    chunks = [picks[i::threads] for i in range(threads)]
    barrier = threading.Barrier(threads + 1)
    latencies: list[float] = []

    def work(chunk: list[tuple[str, str]]) -> None:
        barrier.wait()
        for pid, cat in chunk:
            t0 = time.perf_counter()
            call(pid, cat)
            latencies.append((time.perf_counter() - t0) * 1000)

    workers = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    for w in workers:
        w.join()
    cpu = (time.process_time() - c0) * 1000 / len(picks)
    return len(picks) / (time.perf_counter() - t0), latencies, cpu


def agreement(
    store: EdgeProductStore, settings: Settings, picks: list[tuple[str, str]], case: str
) -> tuple[float, float, float]:
    """Share of queries with the same top k in the same order both ways; share whose differences are only
    in the order (or, at the cut, the choice) of products with equal scores; largest score difference
    at the same rank."""
    same, ties, worst = 0, 0, 0.0
    for pid, cat in picks:
        answers = []
        for local in (False, True):
            store.fuse_locally = local
            answers.append(similar_products(store, pid, settings, CASES[case](cat)).hits)
        old, new = answers
        gaps = [abs(a.score - b.score) for a, b in zip(old, new, strict=False)]
        worst = max([worst, *gaps])
        if [h.product.product_id for h in old] == [h.product.product_id for h in new]:
            same += 1
        elif len(old) == len(new) and max(gaps) < 1e-6:
            ties += 1
    store.fuse_locally = True
    return same / len(picks), ties / len(picks), worst


def split(store: EdgeProductStore, settings: Settings, picks: list[tuple[str, str]]) -> dict[str, float]:
    """Median CPU ms (this process) of each step of a new fused query, and of the rescoring done by reading
    the candidates' vectors into Python instead."""
    from niteru.store import local_fusion as lf

    steps: dict[str, list[float]] = {
        "new: candidate lists (one batch of two plain queries)": [],
        "new: rescoring (one batch of id-restricted queries)": [],
        "new: payloads of the top 10": [],
    }
    steps["rescoring by reading vectors (alternative)"] = []
    version = store.collection
    for pid, _ in picks:
        point = store.get(pid, with_vectors=True)
        assert point is not None
        from niteru.store.plan import plan_search

        plan = plan_search(
            {n: point.vectors[n] for n in ("image", "text")},  # the profile's query: two vectors (joint left out)
            {"image": 0.5, "text": 0.5},
            10,
            SearchFilter(exclude_product_ids=(pid,)),
            settings.fusion,
            dims=store._dims(version),
            rrf_k=settings.rrf_k,
        )
        t0 = time.process_time()
        answers = store._engine_batch(version, [lf._plain(p, False) for p in lf.candidate_prefetches(plan)])
        t1 = time.process_time()
        ids: dict[Any, Any] = {}
        lists = [[(lf._keyed(r.id, ids), float(r.score)) for r in a] for a in answers]
        union = list(dict.fromkeys(ids[i] for lst in lists for i, _ in lst))
        fused = lf._weighted_sum(plan, lists, WeightedSum((0.5, 0.5)), lambda ps: store._engine_batch(version, ps), ids)
        t2 = time.process_time()
        top = sorted(fused, key=lambda i: -fused[i])[:10]
        store._retrieve(version, [str(ids[i]) for i in top], True, False)
        t3 = time.process_time()
        for n, lst in zip(("image", "text"), lists, strict=True):
            have = {ids[i] for i, _ in lst}
            missing = [i for i in union if i not in have]
            records = store._retrieve(version, [str(i) for i in missing], False, True)
            m = np.asarray([r.vector[n] for r in records], np.float32)
            if len(m):
                m @ np.asarray(point.vectors[n], np.float32)
        t4 = time.process_time()
        for key, dt in zip(list(steps)[:4], (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            steps[key].append(dt * 1000)
        # For comparison: the old way's one call, each single-vector search alone, and the whole new way.
        sources = lf.candidate_prefetches(plan)
        image, text = (lf._plain(p, False) for p in sources)
        calls: dict[str, list[QueryPlan]] = {
            "old: Edge's fused query (one call)": [plan],
            "image nearest alone": [image],
            "text nearest alone": [text],
        }
        for key, batch in calls.items():
            c0 = time.process_time()
            store._engine_batch(version, batch)
            steps.setdefault(key, []).append((time.process_time() - c0) * 1000)
        c0 = time.process_time()
        store._query_batch(version, [plan])
        steps.setdefault("new: the whole local fusion", []).append((time.process_time() - c0) * 1000)
    return {k: statistics.median(v) for k, v in steps.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    settings = Settings()
    store = open_store(settings)
    assert isinstance(store, EdgeProductStore), "the Edge engine is what this measures"
    rows = [p.product for batch in store.scroll(2000, with_vectors=False) for p in batch]
    picks = [(p.product_id, p.category) for p in random.Random(0).sample(rows, min(args.queries, len(rows)))]
    info = store.info()
    print(f"{info['points']} products, {info['segments']} segments, {info['indexed_vectors']} indexed vectors")

    results: dict[tuple[str, str, int], tuple[float, float, float]] = {}
    loads: list[float] = []
    for case, options in CASES.items():
        for threads in THREADS:
            runs: dict[str, list[tuple[float, list[float], float]]] = {"old": [], "new": []}
            for run in range(args.runs):
                for way in ("old", "new") if run % 2 == 0 else ("new", "old"):  # neither always goes first
                    store.fuse_locally = way == "new"
                    loads.append(os.getloadavg()[0])
                    runs[way].append(
                        rate(lambda p, c: similar_products(store, p, settings, options(c)), picks, threads)  # noqa: B023
                    )
            for way, rs in runs.items():
                qps = statistics.median(r[0] for r in rs)
                p95 = statistics.median(float(np.percentile(r[1], 95)) for r in rs)
                results[(case, way, threads)] = (qps, p95, statistics.median(r[2] for r in rs))
            old, new = results[(case, "old", threads)], results[(case, "new", threads)]
            print(
                f"{case:<20} {threads} thr: old {old[0]:6.0f} q/s p95 {old[1]:5.1f} ms | new {new[0]:6.0f} q/s "
                f"p95 {new[1]:5.1f} ms | new/old {new[0] / old[0]:.2f}x | CPU ms/query old {old[2]:.2f} new "
                f"{new[2]:.2f}  (load {loads[-1]:.1f})",
                flush=True,
            )
    store.fuse_locally = True
    agree = {c: agreement(store, settings, picks[:100], c) for c in ("auto (wsum)", "auto + category")}
    steps = split(store, settings, picks[:100])
    store.close()
    lines = [
        "# Fused similar query: Edge's own fused query (old) vs plain queries fused in the service (new)",
        "",
        f"`bench/fused_query.py`: {info['points']} products (catalog-dev ingested, real MobileNet and SCDV "
        f"vectors), Edge store with {info['segments']} segments, HNSW built. `similar_products` (the API's path "
        f"without HTTP: read the product, route, search, k=10) for {len(picks)} random products per cell; threads "
        f"share one open store; old and new alternate run by run, median of {args.runs} runs. {os.cpu_count()} "
        f"cores shared with other helpers' work: 1-min load average {min(loads):.1f}-{max(loads):.1f} during the "
        "runs, so the absolute figures are noisy; the new/old ratios, measured side by side, are what count.",
        "",
        "| case | threads | old q/s | old p95 ms | new q/s | new p95 ms | new/old q/s | old CPU ms/q | new CPU ms/q |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in CASES:
        for t in THREADS:
            (oq, op, oc), (nq, np95, nc) = results[(case, "old", t)], results[(case, "new", t)]
            lines.append(
                f"| {case} | {t} | {oq:.0f} | {op:.1f} | {nq:.0f} | {np95:.1f} | {nq / oq:.2f}x | {oc:.2f} | {nc:.2f} |"
            )
    lines += ["", "Same answers (first 100 products, top 10 both ways):", ""]
    for case, (share, ties, worst) in agree.items():
        lines.append(
            f"- {case}: {share:.0%} identical, {ties:.0%} differing only among equal scores (their order, or "
            f"which of them the cut at 10 keeps), largest score difference at a rank {worst:.1e}"
        )
    lines += [
        "",
        "Where a new 50/50 fused query's store time goes (median CPU ms of the process, one thread, 100 products):",
        "",
    ]
    lines += [f"- {k}: {v:.2f} ms" for k, v in steps.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
