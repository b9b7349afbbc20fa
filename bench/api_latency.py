"""Latency of the similar-products API over the ingested dev catalog, and what ingest and the store cost.

1. Ingest a stratified sample of catalog-dev (``--limit``; 0: all 13,367) into a data dir of its own
   (``--fresh`` starts from an empty one; the ingest is resumable, so a rerun measures no throughput).
2. The store's disk and memory: the folder's size, and the RSS a process gains by opening the store.
3. ``niteru serve`` in a subprocess on 127.0.0.1; ``similar`` in each mode, with and without a category
   filter, from 1, 4 and 16 concurrent clients (``--concurrency``), plus search by text and by photo.
   Each request's ``Server-Timing`` header splits its time into model, store and the rest of the server
   (routing, validation, JSON); what is left of the client's latency is HTTP on loopback and the client.
4. With ``--old-code DIR --old-data-dir DIR2``: a second server runs the code of another checkout (main's,
   say) on its own copy of the store, and every case runs on both, alternating run by run so that the
   machine's load falls on both alike: old and new side by side. ``--old-env NITERU_X=value`` (repeatable)
   sets the old server's environment: the same code with another setting (``--old-code`` defaults to this
   checkout then), on a copy of the store.

Percentiles are medians over ``--runs`` runs; the 1-minute load average is recorded with each case
(the machine may be shared: compare rows measured side by side). Writes bench/results/api_latency.{json,md}
(``--out``: another name).

    .venv/bin/python bench/api_latency.py --limit 0 --fresh      # the full catalog (slow on 2 cores)
    .venv/bin/python bench/api_latency.py --data-dir /work/data-x --skip-ingest \
        --old-code /work/main --old-data-dir /work/data-x-old      # an ingested store, old vs new code
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from niteru.catalog import read_catalog, stratified_sample  # noqa: E402
from niteru.ingest import ingest_catalog  # noqa: E402
from niteru.settings import Settings  # noqa: E402
from niteru.store import open_store  # noqa: E402

RESULTS = REPO / "bench" / "results"
MODES = ("auto", "image", "text", "hybrid")
PARTS = ("client", "server", "model", "store", "server_other", "http_client")


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timing(header: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in header.split(","))):
        name, _, dur = part.partition(";dur=")
        out[name] = float(dur)
    return out


Request = tuple[str, str, dict[str, Any]]  # method, url, httpx keyword arguments


def one(client: httpx.Client, req: Request) -> dict[str, float]:
    method, url, kw = req
    t0 = time.perf_counter()
    r = client.request(method, url, **kw)
    client_ms = (time.perf_counter() - t0) * 1000
    r.raise_for_status()
    t = timing(r.headers.get("server-timing", ""))
    server = t.get("total", 0.0)
    return {
        "client": client_ms,
        "server": server,
        "model": t.get("model", 0.0),
        "store": t.get("store", 0.0),
        "server_other": server - t.get("model", 0.0) - t.get("store", 0.0),
        "http_client": client_ms - server,
    }


def run_case(base: str, requests: list[Request], concurrency: int, pid: int) -> dict[str, Any]:
    """Percentiles of each part over the requests, throughput, and the server's CPU ms per request (the
    steadiest cost figure on a shared machine), at the given concurrency."""
    clients = [httpx.Client(base_url=base, timeout=60) for _ in range(concurrency)]
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        rows = list(pool.map(lambda ir: one(clients[ir[0] % concurrency], ir[1]), enumerate(requests)))
    wall = time.perf_counter() - t0
    cpu_ms = (cpu_seconds(pid) - cpu0) * 1000 / len(rows)
    for c in clients:
        c.close()
    out: dict[str, Any] = {"n": len(rows), "rps": len(rows) / wall, "server_cpu_ms": cpu_ms}
    for part in PARTS:
        values = np.array([r[part] for r in rows])
        out[part] = {f"p{q}": float(np.percentile(values, q)) for q in (50, 95, 99)}
    return out


def median_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "n": runs[0]["n"],
        "rps": float(np.median([r["rps"] for r in runs])),
        "server_cpu_ms": float(np.median([r["server_cpu_ms"] for r in runs])),
    }
    for part in PARTS:
        out[part] = {q: float(np.median([r[part][q] for r in runs])) for q in ("p50", "p95", "p99")}
    return out


def cases(ids: list[tuple[str, str]], photos: list[bytes], titles: list[str], k: int) -> dict[str, list[Request]]:
    out: dict[str, list[Request]] = {}
    for mode in MODES:
        out[f"similar mode={mode}"] = [
            ("GET", f"/v1/products/{p}/similar", {"params": {"k": k, "mode": mode}}) for p, _ in ids
        ]
        out[f"similar mode={mode} +category"] = [
            ("GET", f"/v1/products/{p}/similar", {"params": {"k": k, "mode": mode, "category": c}}) for p, c in ids
        ]
    out["search/text"] = [("POST", "/v1/search/text", {"json": {"text": t, "k": k}}) for t in titles]
    out["search/image"] = [
        ("POST", "/v1/search/image", {"files": {"file": ("q.jpg", b, "image/jpeg")}}) for b in photos
    ]
    return out


def serve(data_dir: Path, port: int, code: Path = REPO, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``niteru serve`` of the checkout ``code`` (its packages first on the path) over ``data_dir``, with the
    ``extra`` environment variables (settings)."""
    env = os.environ | {"NITERU_DATA_DIR": str(data_dir), "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(code)}
    env |= extra or {}
    log = (data_dir / "serve.log").open("wb")
    cmd = [sys.executable, "-c", "from cli.main import app; app()", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited; see {data_dir / 'serve.log'}")
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("the server did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", type=Path, default=REPO.parent / "shared" / "data" / "catalog-dev")
    ap.add_argument("--data-dir", type=Path, default=REPO / "data" / "bench")
    ap.add_argument("--limit", type=int, default=2000, help="products to ingest (0: the whole catalog)")
    ap.add_argument("--fresh", action="store_true", help="start from an empty data dir (measures ingest)")
    ap.add_argument("--queries", type=int, default=100, help="requests per case and run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", default="1,4,16", help="comma-separated numbers of concurrent clients")
    ap.add_argument("--out", default="api_latency", help="name of the results files in bench/results/")
    ap.add_argument("--skip-ingest", action="store_true", help="measure the store already in --data-dir")
    ap.add_argument("--old-code", type=Path, help="a checkout whose server runs side by side (old vs new)")
    ap.add_argument("--old-data-dir", type=Path, help="that server's copy of the store (one process per store)")
    ap.add_argument(
        "--old-env",
        action="append",
        default=[],
        metavar="NITERU_X=VALUE",
        help="an environment variable of the old server only (repeatable; without --old-code: this checkout)",
    )
    ap.add_argument("--cases", default="", help="only the cases whose name contains one of these (comma-separated)")
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args()

    if args.fresh and args.data_dir.exists():
        shutil.rmtree(args.data_dir)
    settings = Settings(data_dir=args.data_dir, catalog_dir=args.catalog)
    ingest: dict[str, Any] | None = None
    if not args.skip_ingest:
        t0 = time.perf_counter()
        report = ingest_catalog(args.catalog, settings, limit=args.limit or None)
        ingest_total = time.perf_counter() - t0
        print(report.summary(), f"({ingest_total:.0f} s with model loading and any text-model training)")
        ingest = ingest_figures(args.data_dir, report, ingest_total)

    rows = read_catalog(args.catalog)
    sample = stratified_sample(rows, args.limit) if args.limit else rows
    before = rss_mb()
    with open_store(settings) as store:
        info = store.info()
        store_rss = rss_mb() - before
        stored = set(store.content_hashes([r.product_id for r in sample]))
    print(f"store: {info['points']} points, {info['disk_bytes'] / 1e6:.1f} MB on disk, +{store_rss:.0f} MB RSS to open")

    candidates = [r for r in sample if r.product_id in stored]
    picks = random.Random(0).sample(candidates, min(args.queries, len(candidates)))
    ids = [(r.product_id, r.category) for r in picks]
    photos = [(args.catalog / r.image).read_bytes() for r in picks]
    titles = [r.title for r in picks]

    old_env = dict(e.split("=", 1) for e in args.old_env)
    if old_env and not args.old_code:
        args.old_code = REPO
    servers = {"new": (REPO, args.data_dir)}
    if args.old_code:
        servers = {"old": (args.old_code, args.old_data_dir or args.data_dir), **servers}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    bases: dict[str, str] = {}
    rss: dict[str, dict[str, float]] = {}
    results: dict[str, Any] = {}
    plan = cases(ids, photos, titles, args.k)
    wanted = [c for c in args.cases.split(",") if c]
    plan = {n: r for n, r in plan.items() if not wanted or any(w in n for w in wanted)}
    try:
        for label, (code, data_dir) in servers.items():
            port = free_port()
            procs[label] = serve(data_dir, port, code, old_env if label == "old" else None)
            bases[label] = f"http://127.0.0.1:{port}"
            rss[label] = {"ready": rss_mb(procs[label].pid)}
            warm = httpx.Client(base_url=bases[label], timeout=60)
            for reqs in plan.values():  # warm-up: first calls trace TF functions and fill caches
                for req in reqs[:3]:
                    one(warm, req)
            warm.close()
        for name, reqs in plan.items():
            for conc in (int(c) for c in args.concurrency.split(",")):
                runs: dict[str, list[dict[str, Any]]] = {label: [] for label in servers}
                load = os.getloadavg()[0]
                for _ in range(args.runs):
                    for label in servers:  # alternating: the load of the moment falls on both
                        runs[label].append(run_case(bases[label], reqs, conc, procs[label].pid))
                for label in servers:
                    key = f"{name} | c={conc}" + (f" | {label}" if len(servers) > 1 else "")
                    results[key] = median_runs(runs[label]) | {"load": load}
                    r = results[key]
                    print(
                        f"{name:<30} c={conc:<2} {label}: p50 {r['client']['p50']:7.1f}  p95 "
                        f"{r['client']['p95']:7.1f}  p99 {r['client']['p99']:7.1f} ms  {r['rps']:6.1f} req/s  "
                        f"store p50 {r['store']['p50']:5.2f} ms  server CPU {r['server_cpu_ms']:5.2f} ms/req  "
                        f"(load {load:.1f})",
                        flush=True,
                    )
        for label, proc in procs.items():
            rss[label]["after_bench"] = rss_mb(proc.pid)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(30)
    write(args, ingest, info, store_rss, rss, results)


def ingest_figures(data_dir: Path, report: Any, total: float) -> dict[str, Any]:
    """This run's ingest throughput, or, when it found everything stored, that of the run that built it."""
    saved = data_dir / "bench-ingest.json"
    figures = {
        "written": report.written,
        "unchanged": report.unchanged,
        "failed": report.failed,
        "seconds": report.seconds,
        "products_per_s": report.products_per_s,
        "seconds_total": total,
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if report.written >= report.unchanged:
        saved.write_text(json.dumps(figures, indent=2))
        return figures
    if saved.is_file():
        earlier: dict[str, Any] = json.loads(saved.read_text())
        return earlier | {"from_the_run_that_built_the_store": True}
    return figures


def write(
    args: argparse.Namespace,
    ing: dict[str, Any] | None,
    info: dict[str, Any],
    store_rss: float,
    rss: dict[str, dict[str, float]],
    results: dict[str, Any],
) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    loads = [r["load"] for r in results.values()]
    meta = {
        "machine": f"{os.cpu_count()} cores, shared with other work while measured",
        "load_average_1min": [min(loads), max(loads)] if loads else None,
        "points": info["points"],
        "engine": info["engine"],
        "queries_per_case": args.queries,
        "runs": args.runs,
        "k": args.k,
        "ingest": ing,
        "store_disk_mb": info["disk_bytes"] / 1e6 if info["disk_bytes"] else None,
        "store_open_rss_mb": store_rss,
        "server_rss_mb": rss,
        "old_code": str(args.old_code) if args.old_code else None,
        "old_env": args.old_env,
    }
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"meta": meta, "cases": results}, indent=2))
    side = args.old_code is not None
    lines = [
        "# API latency (bench/api_latency.py)",
        "",
        f"{meta['points']} products in the {meta['engine']} store; {meta['machine']} (1-minute load average "
        f"{min(loads):.1f}-{max(loads):.1f} while measured: absolute figures are noisy"
        + (", the old/new rows of a case were measured alternately, run by run, and compare" if side else "")
        + f"). Client latency in ms (median of {args.runs} runs of {args.queries} requests per case, k={args.k}); "
        "model/store/server_other from the Server-Timing header; http_client is client latency minus server time."
        + (f" The old server ran with {' '.join(args.old_env)}." if args.old_env else ""),
        "",
        "| case | clients |"
        + (" code |" if side else "")
        + " p50 | p95 | p99 | req/s | server CPU ms/req | model p50 | store p50 | server other p50 | http+client p50 "
        "| load |",
        "|---|---:|" + ("---|" if side else "") + "---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, r in results.items():
        name, rest = key.split(" | c=")
        conc, _, label = rest.partition(" | ")
        lines.append(
            f"| {name} | {conc} |"
            + (f" {label} |" if side else "")
            + f" {r['client']['p50']:.1f} | {r['client']['p95']:.1f} | {r['client']['p99']:.1f} | "
            f"{r['rps']:.1f} | {r['server_cpu_ms']:.2f} | {r['model']['p50']:.1f} | {r['store']['p50']:.2f} | "
            f"{r['server_other']['p50']:.1f} | {r['http_client']['p50']:.1f} | {r['load']:.1f} |"
        )
    lines.append("")
    if ing:
        lines.append(
            f"Ingest: {ing['written']} written, {ing['unchanged']} unchanged, {ing['failed']} failed in "
            f"{ing['seconds']:.0f} s = {ing['products_per_s']:.1f} products/s (read, embed image and text, upsert; "
            f"{ing['seconds_total']:.0f} s in all with loading the models and training the text model when none "
            "existed)."
        )
    disk = f"{meta['store_disk_mb']:.1f} MB on disk, " if meta["store_disk_mb"] else ""
    servers = "; ".join(
        f"{label} server RSS {r['ready']:.0f} MB ready, {r.get('after_bench', float('nan')):.0f} MB after the bench"
        for label, r in rss.items()
    )
    lines.append(f"Store: {disk}+{store_rss:.0f} MB RSS to open; {servers}.")
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
