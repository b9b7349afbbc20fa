"""Products per second through the Celery queue, and the duration of a full rebuild.

Real workers (``celery -A jobs.celery_app worker --pool solo``) against the local Redis; the products
are real catalog-dev rows not yet in the store, each a ``niteru.images.registered`` task (image and
text embedded, conditional upsert) or, batched, ``niteru.images.registered_many`` with ``--batch``
items per task. Model loading is excluded (a warm-up task first). The clock runs from the first send to
the last result.

Two workers: the embedded store admits one process and this machine has no Qdrant server, so each of
the two worker processes owns a copy of the base store; what is measured is how two model-bound
processes share 2 cores (a store write is a small part of a task), not a shared-store deployment.

The rebuild: ``rebuild()`` over the whole catalog-dev ingested into ``--rebuild-data`` (ingested first
when empty, with ``niteru ingest``), timed end to end: read, retrain text model + classifier, re-embed,
catch up, check, swap.

    python bench/jobs_throughput.py                      # 600 products, 3 runs, batches of 32
    python bench/jobs_throughput.py --skip-rebuild --products 200 --runs 1
    python bench/jobs_throughput.py --skip-rebuild --setups 1xB       # batched, one worker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
CELERY = Path(sys.executable).parent / "celery"
NITERU = Path(sys.executable).parent / "niteru"
BROKER, BACKEND = "redis://127.0.0.1:6379/12", "redis://127.0.0.1:6379/13"


def base_store(catalog: Path, work: Path, n: int) -> tuple[Path, list[Any]]:
    """A store of ``n`` sample products (the text model trained on them) and rows not in it."""
    from niteru.catalog import read_catalog, stratified_sample

    rows = read_catalog(catalog)
    base = stratified_sample(rows, n)
    taken = {r.product_id for r in base}
    rest = [r for r in rows if r.product_id not in taken]
    random.Random(0).shuffle(rest)  # the file is grouped by source: every run gets a mix of categories
    data = work / "base"
    env = {**os.environ, "NITERU_DATA_DIR": str(data), "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([str(NITERU), "ingest", str(catalog), "--limit", str(n)], env=env, check=True)
    return data, rest


def start_workers(base: Path, work: Path, count: int, queue: str) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(count):
        data = work / f"worker-{queue}-{i}"
        shutil.copytree(base, data)
        env = {
            **os.environ,
            "NITERU_DATA_DIR": str(data),
            "NITERU_CELERY_BROKER_URL": BROKER,
            "NITERU_CELERY_RESULT_BACKEND": BACKEND,
            "NITERU_CELERY_QUEUE": queue,
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        cmd = [str(CELERY), "-A", "jobs.celery_app", "worker", "--pool", "solo", "-Q", queue, "-n", f"w{i}-{queue}@%h"]
        log = (work / f"{queue}-{i}.log").open("wb")
        procs.append(subprocess.Popen([*cmd, "--loglevel", "WARNING"], env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def one_run(base: Path, work: Path, rows: list[Any], workers: int, batch: int) -> dict[str, Any]:
    from celery import Celery

    queue = f"niteru-bench-{uuid.uuid4().hex[:8]}"
    client = Celery("bench", broker=BROKER, backend=BACKEND)
    procs = start_workers(base, work, workers, queue)
    try:
        # Warm-up: one task per worker, each loading its models; wait until all answered.
        warm = [
            client.send_task("niteru.products.delete", kwargs={"product_id": f"warm-{i}"}, queue=queue)
            for i in range(workers * 2)
        ]
        for w in warm:
            w.get(timeout=600)
        items = [
            {
                "product_id": f"bench-{r.product_id}",
                "image": r.image,
                "fields": {
                    "shop_id": r.shop_id,
                    "title": r.title,
                    "description": r.description,
                    "category": r.category,
                },
            }
            for r in rows
        ]
        start = time.perf_counter()
        if batch <= 1:
            sent = [client.send_task("niteru.images.registered", kwargs=it, queue=queue) for it in items]
            results = [s.get(timeout=3600) for s in sent]
            statuses = [r["status"] for r in results]
        else:
            chunks = [items[i : i + batch] for i in range(0, len(items), batch)]
            sent = [client.send_task("niteru.images.registered_many", kwargs={"items": c}, queue=queue) for c in chunks]
            statuses = [it["status"] for s in sent for it in s.get(timeout=3600)["items"]]
        seconds = time.perf_counter() - start
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=120)
        client.close()
    ok = statuses.count("created")
    return {"seconds": seconds, "created": ok, "failed": len(statuses) - ok, "per_s": len(statuses) / seconds}


def time_rebuild(data: Path, catalog: Path) -> float:
    env = {**os.environ, "NITERU_DATA_DIR": str(data), "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([str(NITERU), "ingest", str(catalog)], env=env, check=True)  # resumable: quick when done
    start = time.perf_counter()
    subprocess.run([str(NITERU), "rebuild"], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    from niteru.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=600, help="products sent per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="items per registered_many task")
    parser.add_argument("--base", type=int, default=500, help="products in the store before the run")
    parser.add_argument("--rebuild-data", type=Path, default=ROOT / "data" / "full")
    parser.add_argument("--rebuild-runs", type=int, default=3)
    parser.add_argument("--skip-rebuild", action="store_true")
    parser.add_argument(
        "--setups", default="1x1,1xB,2x1,2xB", help="worker processes x items per task (B: --batch), comma-separated"
    )
    args = parser.parse_args()
    setups = [tuple(int(x.replace("B", str(args.batch))) for x in s.split("x")) for s in args.setups.split(",")]
    args.load_before = os.getloadavg()
    catalog = Settings().catalog_dir
    rows_out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="niteru-jobs-bench-") as tmp:
        work = Path(tmp)
        base, rest = base_store(catalog, work, args.base)
        for workers, batch in setups:
            runs = []
            for r in range(args.runs):
                sample = rest[r * args.products : (r + 1) * args.products]  # fresh products every run
                runs.append(one_run(base, work, sample, workers, batch))
                print(f"workers={workers} batch={batch} run {r + 1}: {runs[-1]['per_s']:.1f} products/s", flush=True)
            rows_out.append(
                {
                    "workers": workers,
                    "batch": batch,
                    "products_per_s": statistics.median(x["per_s"] for x in runs),
                    "failed": sum(x["failed"] for x in runs),
                    "runs": runs,
                }
            )
    rebuilds = [] if args.skip_rebuild else [time_rebuild(args.rebuild_data, catalog) for _ in range(args.rebuild_runs)]
    report(args, rows_out, rebuilds)


def report(args: argparse.Namespace, rows: list[dict[str, Any]], rebuilds: list[float]) -> None:
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    lines = [
        f"Machine: {machine}; {args.products} real catalog-dev products per run, median of {args.runs} runs; "
        f"store holding {args.base} products; Redis broker on localhost; load average "
        f"{args.load_before[0]:.2f} / {args.load_before[1]:.2f} / {args.load_before[2]:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (the machine is shared).",
        "",
        "| worker processes | task | products/s | failed |",
        "|---:|---|---:|---:|",
    ]
    for r in rows:
        task = (
            "images.registered (1 per task)" if r["batch"] <= 1 else f"images.registered_many ({r['batch']} per task)"
        )
        lines.append(f"| {r['workers']} | {task} | {r['products_per_s']:.1f} | {r['failed']} |")
    if rebuilds:
        each = ", ".join(f"{s:.0f}" for s in rebuilds)
        lines += [
            "",
            f"Full rebuild of the {args.rebuild_data.name} store (all of catalog-dev): median "
            f"{statistics.median(rebuilds):.0f} s over {len(rebuilds)} runs ({each} s).",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "jobs_throughput.md").write_text(text)
    (RESULTS / "jobs_throughput.json").write_text(
        json.dumps({"machine": machine, "rows": rows, "rebuild_s": rebuilds}, indent=1)
    )


if __name__ == "__main__":
    main()
