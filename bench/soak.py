"""The acknowledged-writes soak: nothing a 2xx promised is lost, whatever crashes meanwhile.

``niteru serve`` runs as a subprocess on 127.0.0.1 with its own data folder (real models: MobileNet and
a text model trained on a catalog-dev sample by ``niteru ingest``). For ``--minutes``, client threads
write and read through the API:

- PUT threads: ``PUT /v1/products/{id}`` (a catalog image, a title carrying a write counter) and
  ``DELETE``, over a small pool of ids each (writes overwrite), and ``GET .../similar``;
- one task thread: the same writes as tasks (``POST /v1/tasks``, ``niteru.images.registered`` and
  ``niteru.products.delete``, run by the inline executor): a 202 is an acknowledgement too.

Each thread owns its ids, so the acknowledged writes of one product are ordered and "the last
acknowledged state" is exact. A write whose answer never came (a connection cut by the SIGKILL) may or
may not have happened: it is "uncertain", and the product may end in it instead.

Meanwhile: the Edge index is rebuilt in the background every ``--index-after`` writes
(``NITERU_EDGE_INDEX_AFTER``, with an indexing threshold low enough for the sample to be indexed), a
rebuild runs (``POST /v1/tasks niteru.collection.rebuild``), the server is SIGKILLed and restarted, then
a second rebuild. At the end the clients stop, every accepted task is
waited for, the server is SIGKILLed and restarted once more, and every product is read back through the
API: each must hold exactly its last acknowledged state (or a later uncertain one), deleted ones absent.

    python bench/soak.py --minutes 10
    python bench/soak.py --minutes 2 --products 150 --threads 3

The Celery mode is ``bench/soak_celery.py`` (``--mode celery`` here says so): one solo worker owns the
embedded store, SIGKILLed mid-batch; bench/results/soak.md says what this machine does not allow.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soak_parts import RESULTS, Ledger, Server, Stats, free_port, longest_gap, prepare, render, run_task, wait_task  # noqa: E402  (bench/ is on sys.path as a script)

INFLIGHT = 4  # unfinished tasks a task thread allows itself


def body(row: dict[str, Any], title: str) -> dict[str, Any]:
    return {"shop_id": row["shop_id"], "title": title, "category": row["category"], "image_path": row["image"]}


class Client(threading.Thread):
    """Writes and reads over its own product ids until ``stop`` is set."""

    def __init__(
        self,
        n: int,
        url: str,
        rows: list[dict[str, Any]],
        ids: list[str],
        stats: Stats,
        stop: threading.Event,
        tasks: bool,
    ) -> None:
        super().__init__(name=f"soak-{n}", daemon=True)
        self.url, self.rows, self.ids, self.stats, self.stop, self.tasks = url, rows, ids, stats, stop, tasks
        self.ledger = {pid: Ledger() for pid in ids}
        self.task_ids: list[str] = []
        self.inflight: deque[str] = deque()
        self.rng = random.Random(n)
        self.counter = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self.stop.is_set():
                pid = self.rng.choice(self.ids)
                roll = self.rng.random()
                if roll < 0.25 and not self.tasks:
                    self._similar(http, pid)
                elif roll < 0.45:
                    self._write(http, pid, None)
                else:
                    self.counter += 1
                    row = self.rng.choice(self.rows)
                    self._write(
                        http, pid, {"title": f"{pid} w{self.counter} {row['title'][:60]}", "image": row["image"]}
                    )

    def _throttle(self, http: httpx.Client) -> None:
        """At most ``INFLIGHT`` of this thread's tasks unfinished: the one executor thread embeds images more
        slowly than a client posts them, and a backlog would only delay the faults' own tasks (the rebuild)."""
        while len(self.inflight) >= INFLIGHT and not self.stop.is_set():
            try:
                done = http.get(f"/v1/tasks/{self.inflight[0]}").json().get("status") in ("succeeded", "failed")
            except (httpx.HTTPError, ValueError):
                done = False
            if done:
                self.inflight.popleft()
            else:
                time.sleep(0.2)

    def _write(self, http: httpx.Client, pid: str, state: dict[str, str] | None) -> None:
        kind = ("task-" if self.tasks else "") + ("put" if state else "delete")
        ledger = self.ledger[pid]
        if self.tasks:
            self._throttle(http)
        try:
            if self.tasks:
                kwargs: dict[str, Any] = {"product_id": pid}
                name = "niteru.products.delete"
                if state is not None:
                    row = next(r for r in self.rows if r["image"] == state["image"])
                    name = "niteru.images.registered"
                    kwargs |= {
                        "image": state["image"],
                        "fields": {k: v for k, v in body(row, state["title"]).items() if k != "image_path"},
                    }
                r = http.post("/v1/tasks", json={"name": name, "kwargs": kwargs})
                ok = r.status_code == 202
                if ok:
                    self.task_ids.append(r.json()["task_id"])
                    self.inflight.append(r.json()["task_id"])
            elif state is None:
                r = http.delete(f"/v1/products/{pid}")
                ok = r.status_code in (204, 404)  # 404: already absent, an acknowledged absence too
            else:
                row = next(r for r in self.rows if r["image"] == state["image"])
                r = http.put(f"/v1/products/{pid}", json=body(row, state["title"]))
                ok = r.status_code in (200, 201)
        except httpx.HTTPError as exc:
            ledger.maybe(state)  # no answer: it may have happened
            self.stats.note(kind, type(exc).__name__, False)
            time.sleep(0.2)  # the server is down: do not spin
            return
        if ok:
            ledger.ack(state)
        elif r.status_code >= 500:
            ledger.maybe(state)  # a 5xx promises nothing either way
            if len(self.stats.samples) < 10:
                self.stats.samples.append(f"{kind} {r.status_code} {r.text[:200]}")
        self.stats.note(kind, r.status_code, r.status_code < 500, ok)

    def _similar(self, http: httpx.Client, pid: str) -> None:
        try:
            r = http.get(f"/v1/products/{pid}/similar", params={"k": 5})
        except httpx.HTTPError as exc:
            self.stats.note("similar", type(exc).__name__, False)
            time.sleep(0.2)
            return
        self.stats.note("similar", r.status_code, r.status_code < 500)


def check(url: str, clients: list[Client]) -> tuple[int, int, list[dict[str, Any]]]:
    """(products checked, lost writes, details): each product against its ledger, read through the API."""
    lost: list[dict[str, Any]] = []
    checked = 0
    with httpx.Client(base_url=url, timeout=60) as http:
        for client in clients:
            for pid, ledger in client.ledger.items():
                if not ledger.known:
                    continue
                checked += 1
                r = http.get(f"/v1/products/{pid}")
                got = None if r.status_code == 404 else {"title": r.json()["title"], "image": r.json()["image"]}
                if got != ledger.acked and got not in ledger.uncertain:
                    lost.append(
                        {"product_id": pid, "expected": ledger.acked, "found": got, "uncertain": ledger.uncertain}
                    )
    return checked, len(lost), lost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--mode", choices=["inline", "celery"], default="inline")
    ap.add_argument("--threads", type=int, default=3, help="PUT/DELETE/similar threads (plus one task thread)")
    ap.add_argument("--ids", type=int, default=40, help="product ids per thread (re-used: writes overwrite)")
    ap.add_argument("--products", type=int, default=300, help="catalog sample ingested first")
    ap.add_argument("--index-after", type=int, default=150, help="writes between background Edge index builds")
    ap.add_argument("--catalog", type=Path, default=None, help="catalog folder (default: the catalog_dir setting)")
    ap.add_argument("--data-dir", type=Path, default=None, help="reuse an ingested data folder (default: a new one)")
    args = ap.parse_args()
    if args.mode == "celery":
        sys.exit("--mode celery: run bench/soak_celery.py (a solo worker owns the store; see its docstring)")

    from niteru.settings import get_settings

    args.catalog = (args.catalog or get_settings().catalog_dir).resolve()
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="niteru-soak-")) / "data"
    log = data.parent / "soak-server.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NITERU_DATA_DIR": str(data),
        "NITERU_CATALOG_DIR": str(args.catalog),
        "NITERU_EDGE_INDEX_AFTER": str(args.index_after),
        # Below Edge's default threshold a sample this small is never indexed and the builds are skipped.
        "NITERU_EDGE_INDEXING_THRESHOLD_KB": "64",
        "NITERU_REBUILD_CRON": "",
        "NITERU_JOBS_EXECUTOR": "inline",
        "NITERU_LOG_LEVEL": "WARNING",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    t_setup = time.monotonic()
    rows = prepare(data, args.catalog, args.products, env, log)
    setup = time.monotonic() - t_setup
    server = Server(env, free_port(), log)
    startups = [server.start()]
    stats, stop = Stats(), threading.Event()
    clients = [
        Client(n, server.url, rows, [f"soak-{n}-{i}" for i in range(args.ids)], stats, stop, tasks=n == args.threads)
        for n in range(args.threads + 1)
    ]
    t0 = time.monotonic()
    for c in clients:
        c.start()
    duration = args.minutes * 60
    faults: list[dict[str, Any]] = []

    def at(fraction: float) -> None:
        time.sleep(max(0.0, t0 + fraction * duration - time.monotonic()))

    def elapsed() -> float:
        return round(time.monotonic() - t0, 1)

    at(0.2)
    faults.append({"at": elapsed(), "fault": "rebuild", "result": run_task(server.url, "niteru.collection.rebuild")})
    at(0.5)
    server.kill()
    faults.append({"at": elapsed(), "fault": "SIGKILL + restart"})
    startups.append(server.start())
    at(0.7)
    faults.append({"at": elapsed(), "fault": "rebuild", "result": run_task(server.url, "niteru.collection.rebuild")})
    at(1.0)
    stop.set()
    for c in clients:
        c.join(120)
    ran = elapsed()
    # every accepted task runs (and then the last crash: what was acknowledged must be on disk)
    with httpx.Client(timeout=30) as http:
        tasks = [wait_task(server.url, t, http=http) for c in clients for t in c.task_ids]
    task_outcomes = Counter(t["status"] for t in tasks)
    server.kill()
    startups.append(server.start())
    checked, lost, details = check(server.url, clients)
    store = httpx.get(f"{server.url}/readyz", timeout=30).json().get("store", {})  # did the index builds happen
    server.kill()
    report = {
        "mode": args.mode,
        "minutes": round(ran / 60, 2),
        "threads": args.threads + 1,
        "setup_seconds": round(setup, 1),
        "server_startups_seconds": [round(s, 1) for s in startups],
        "requests": sum(stats.requests.values()),
        "requests_by_kind": dict(stats.requests),
        "acknowledged_writes": stats.acked,
        "tasks_accepted": len(tasks),
        "task_outcomes": dict(task_outcomes),
        "products_checked": checked,
        "lost_writes": lost,  # must be 0
        "lost_details": details[:20],
        "statuses": dict(sorted(stats.statuses.items())),
        "longest_unavailability_seconds": round(longest_gap(stats.events), 1),
        "error_samples": stats.samples,
        "store_at_the_end": store,
        "faults": faults,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "data_dir": str(data),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=2))
    render()
    print(json.dumps(report, indent=2))
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
