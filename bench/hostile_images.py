"""Hostile images against a served API, old code and new side by side in one run.

For each checkout (``--old`` and ``--new``, each a directory of the project), this starts ``uvicorn`` on
the real app with the fake embedders (tests/fakes.py: the real image decoding, no TensorFlow, so the
decoder's memory is what moves), measures its idle RSS, then sends ``--concurrency`` photo searches at
once, cycling through hostile images: a 75 KiB 16-bit 6300x6300 PNG, a 6000x6000 JPEG (a decompression
bomb under the old 40 M pixel limit), a PNG header claiming 60000x60000, and the largest image the new
limit accepts (a 16-bit 4000x4000 PNG). While the burst runs, a second client asks ``/healthz`` and
``GET /v1/products`` in a loop. Reported per checkout and round: peak RSS over idle RSS, burst time,
the latency of the other requests, and the statuses of the burst.

    python bench/hostile_images.py --old /tmp/main-copy --new . --rounds 3
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

SERVE = """
import sys, uvicorn
from api.app import create_app
from niteru.settings import Settings
from tests.fakes import fake_embedders
s = Settings(data_dir=sys.argv[1], catalog_dir=sys.argv[2], celery_broker_url="redis://127.0.0.1:1/0",
             metrics_broker_timeout=0.1, log_format="text", log_level="WARNING")
uvicorn.run(create_app(s, embedders=fake_embedders(s)), host="127.0.0.1", port=int(sys.argv[3]),
            log_level="warning")
"""


def png(width: int, height: int, bit_depth: int = 16, rows: int | None = None) -> bytes:
    """A grey PNG of zeros; ``rows`` truncates the body (a header-only bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    row = b"\0" * (1 + width * bit_depth // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height if rows is None else rows)) + compressor.flush()
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([bit_depth, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def jpeg(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), (250, 250, 250)).save(out, format="JPEG", quality=5)
    return out.getvalue()


def hostile_images() -> dict[str, bytes]:
    return {
        "png16-6300": png(6300, 6300),
        "jpeg-6000": jpeg(6000),
        "header-60000": png(60000, 60000, 8, rows=4),
        "png16-4000": png(4000, 4000),
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_round(checkout: Path, catalog: Path, images: dict[str, bytes], concurrency: int) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        server = subprocess.Popen([sys.executable, "-c", SERVE, data, str(catalog), str(port)], cwd=checkout, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=120) as client:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("server did not start")
                    time.sleep(0.1)
                client.get("/v1/products")  # warm the listing path
                idle = rss_kib(server.pid)
                return burst(client, server.pid, idle, images, concurrency)
        finally:
            server.terminate()
            server.wait(30)


def burst(client: httpx.Client, pid: int, idle: int, images: dict[str, bytes], concurrency: int) -> dict[str, Any]:
    peak, done = idle, threading.Event()
    other: list[float] = []

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(pid))
            done.wait(0.01)

    def others() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=120) as c:
            while not done.is_set():
                for path in ("/healthz", "/v1/products?limit=5"):
                    t0 = time.perf_counter()
                    c.get(path).raise_for_status()
                    other.append(time.perf_counter() - t0)

    names = [list(images)[i % len(images)] for i in range(concurrency)]

    def search(name: str) -> int:
        files = {"file": (f"{name}.img", images[name], "application/octet-stream")}
        return client.post("/v1/search/image", files=files).status_code

    watchers = [threading.Thread(target=sample), threading.Thread(target=others)]
    for w in watchers:
        w.start()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(search, names))
    elapsed = time.perf_counter() - t0
    done.set()
    for w in watchers:
        w.join()
    return {
        "idle_mib": idle / 1024,
        "peak_mib": peak / 1024,
        "peak_over_idle": peak / idle,
        "burst_s": elapsed,
        "other_requests": len(other),
        "other_median_ms": statistics.median(other) * 1000 if other else None,
        "other_max_ms": max(other) * 1000 if other else None,
        "statuses": dict(Counter(f"{n}:{s}" for n, s in zip(names, statuses, strict=True))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, required=True, help="checkout of the old code (e.g. main)")
    parser.add_argument("--new", type=Path, default=Path(), help="checkout of the new code")
    parser.add_argument(
        "--catalog", type=Path, default=Path(os.environ.get("NITERU_TEST_CATALOG", "../shared/data/catalog-dev"))
    )
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--old-rounds", type=int, help="rounds of the old code (default --rounds; it may take GBs)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/hostile_images.json"))
    args = parser.parse_args()
    images = hostile_images()
    print("images:", {k: len(v) for k, v in images.items()}, "load:", Path("/proc/loadavg").read_text().strip())
    results: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    old_rounds = args.rounds if args.old_rounds is None else args.old_rounds
    for n in range(args.rounds):
        for label, checkout in (("old", args.old), ("new", args.new)):  # alternate: same machine noise
            if label == "old" and n >= old_rounds:
                continue
            r = run_round(checkout.resolve(), args.catalog.resolve(), images, args.concurrency)
            r["loadavg"] = Path("/proc/loadavg").read_text().split()[0]
            results[label].append(r)
            print(label, n, json.dumps(r))
    for label, rounds in results.items():
        if not rounds:
            continue
        print(
            f"{label}: median peak/idle {statistics.median(r['peak_over_idle'] for r in rounds):.2f}, "
            f"median burst {statistics.median(r['burst_s'] for r in rounds):.2f} s, "
            f"median other-request max {statistics.median(r['other_max_ms'] or 0 for r in rounds):.0f} ms"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
