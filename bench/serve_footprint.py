"""Start-up time and memory of the serving processes, old code against new, side by side in one run.

    python bench/serve_footprint.py --data DATA_DIR [--old /work/main] [--runs 3]

For each code tree (``--old`` and this checkout), ``--runs`` times, interleaved: the API (``niteru serve``)
from process start to the first 200 of ``/readyz`` (models loaded, store open), its RSS then and after
one photo search; and a Celery worker (``--pool solo``) from process start to the answer of its first
task (which loads its models), its RSS then and after one registered image. Each tree gets its own copy
of ``DATA_DIR`` (a store such as ``niteru ingest --demo`` leaves), so neither sees the other's writes.
Writes bench/results/serve_footprint.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BROKER, BACKEND = "redis://127.0.0.1:6379/14", "redis://127.0.0.1:6379/15"
PORT = 18731
CATALOG = Path(os.environ.get("NITERU_CATALOG_DIR") or ROOT.parent / "shared" / "data" / "catalog-dev")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def environment(tree: Path, data: Path, queue: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NITERU_")}
    return {
        **env,
        "NITERU_CATALOG_DIR": str(CATALOG),
        "PYTHONPATH": str(tree),
        "NITERU_DATA_DIR": str(data),
        "NITERU_CELERY_BROKER_URL": BROKER,
        "NITERU_CELERY_RESULT_BACKEND": BACKEND,
        "NITERU_CELERY_QUEUE": queue,
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


def measure_api(tree: Path, data: Path, photo: bytes, work: Path) -> dict[str, float]:
    env = environment(tree, data, "unused")
    cmd = [sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1", "--port", str(PORT)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=10) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the API exited with {proc.returncode}")
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.02)  # polling a server that is starting: there is no event to wait on
            ready = time.perf_counter() - start
            rss_ready = rss_mb(proc.pid)
            answer = client.post("/v1/search/image", files={"file": ("q.jpg", photo, "image/jpeg")})
            answer.raise_for_status()
            return {"ready_s": ready, "rss_ready_mb": rss_ready, "rss_after_search_mb": rss_mb(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def measure_worker(tree: Path, data: Path, image: str, work: Path) -> dict[str, float]:
    from celery import Celery

    queue = f"niteru-footprint-{uuid.uuid4().hex[:8]}"
    env = environment(tree, data, queue)
    celery = Path(sys.executable).parent / "celery"
    cmd = [str(celery), "-A", "jobs.celery_app", "worker", "--pool", "solo", "-Q", queue, "--loglevel", "WARNING"]
    client = Celery("footprint", broker=BROKER, backend=BACKEND)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first = client.send_task("niteru.products.delete", kwargs={"product_id": "warm-up"}, queue=queue)
        first.get(timeout=600)
        ready = time.perf_counter() - start
        rss_ready = rss_mb(proc.pid)
        item = {"product_id": "footprint-1", "image": image, "fields": {"shop_id": "bench", "title": "a shirt"}}
        client.send_task("niteru.images.registered", kwargs=item, queue=queue).get(timeout=600)
        return {"ready_s": ready, "rss_ready_mb": rss_ready, "rss_after_image_mb": rss_mb(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a data folder holding a store (demo)")
    parser.add_argument("--old", type=Path, default=Path("/work/main"))
    parser.add_argument(
        "--old-data",
        type=Path,
        help="the old tree's store, when it cannot read the new one's (e.g. made by `niteru ingest --demo` of each)",
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    photo_name = sorted((CATALOG / "images").glob("*.jpg"))[0]
    load_before = os.getloadavg()
    trees = {"old": args.old.resolve(), "new": ROOT}
    samples: dict[str, dict[str, list[dict[str, float]]]] = {t: {"api": [], "worker": []} for t in trees}
    with tempfile.TemporaryDirectory(prefix="niteru-footprint-") as tmp:
        work = Path(tmp)
        sources = {"old": args.old_data or args.data, "new": args.data}
        copies = {t: shutil.copytree(sources[t], work / f"data-{t}") for t in trees}
        for _ in range(args.runs):
            for name, tree in trees.items():
                samples[name]["api"].append(measure_api(tree, copies[name], photo_name.read_bytes(), work))
                samples[name]["worker"].append(measure_worker(tree, copies[name], f"images/{photo_name.name}", work))
                print(name, samples[name]["api"][-1], samples[name]["worker"][-1], flush=True)
    medians = {
        t: {kind: {k: statistics.median(s[k] for s in runs) for k in runs[0]} for kind, runs in by.items()}
        for t, by in samples.items()
    }
    report(args, medians, samples, load_before, os.getloadavg())


def report(args: argparse.Namespace, medians: dict[str, Any], samples: Any, before: Any, after: Any) -> None:
    lines = [
        f"{os.cpu_count()} cores; store {args.data.name}"
        + (
            f" (old code: {args.old_data.name}, each made by its code's `niteru ingest --demo`)"
            if args.old_data
            else ""
        )
        + f"; median of {args.runs} "
        f"interleaved runs per process; old = {args.old}, new = this checkout; load average "
        f"{before[0]:.2f} / {before[1]:.2f} / {before[2]:.2f} before, {after[0]:.2f} after (the machine is shared).",
        "",
        "| process | code | start to ready (s) | RSS ready (MB) | RSS after one image (MB) |",
        "|---|---|---:|---:|---:|",
    ]
    for kind, after_key in (("api", "rss_after_search_mb"), ("worker", "rss_after_image_mb")):
        for tree in ("old", "new"):
            m = medians[tree][kind]
            lines.append(f"| {kind} | {tree} | {m['ready_s']:.2f} | {m['rss_ready_mb']:.0f} | {m[after_key]:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_footprint.md").write_text(text)
    (RESULTS / "serve_footprint.json").write_text(json.dumps({"medians": medians, "samples": samples}, indent=1))


if __name__ == "__main__":
    main()
