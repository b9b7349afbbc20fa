"""The acknowledged-writes soak, Celery mode: tasks sent to Redis are not lost when workers die mid-batch.

What this machine allows: no Qdrant server, and the embedded store admits one process, so one solo worker
(``celery -A jobs.celery_app worker --pool solo``) owns the Edge store of its data folder, and the API
cannot run beside it with the same store. Client threads therefore act as shop backends do, with
``send_task`` (no version given: the worker stamps the first delivery), ``niteru.images.registered_many``
batches and ``niteru.products.delete`` over their own product ids; a send that returned is the
acknowledgement (the message is in Redis). Meanwhile the worker is SIGKILLed mid-batch twice and started
again (a killed batch comes back after the visibility timeout), and a rebuild is sent. At the end every
task is waited for, the worker stops, and the store is read directly: each product must hold its last
acknowledged state, deleted ones absent.

    python bench/soak_celery.py --minutes 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soak_parts import RESULTS, Ledger, Stats, longest_gap, prepare, render  # noqa: E402  (bench/ is on sys.path as a script)

CELERY = Path(sys.executable).parent / "celery"
BROKER, BACKEND = "redis://127.0.0.1:6379/8", "redis://127.0.0.1:6379/9"
BATCH, INFLIGHT = 4, 3


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [str(CELERY), "-A", "jobs.celery_app", "worker", "--pool", "solo", "-Q", self.env["NITERU_CELERY_QUEUE"]]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([*cmd, "--loglevel", "WARNING"], env=self.env, stdout=out, stderr=out)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=120)


class Sender(threading.Thread):
    def __init__(self, n: int, app: Any, queue: str, rows: list[dict[str, Any]], ids: list[str], stats: Stats) -> None:
        super().__init__(name=f"soak-celery-{n}", daemon=True)
        self.app, self.queue, self.rows, self.ids, self.stats = app, queue, rows, ids, stats
        self.ledger = {pid: Ledger() for pid in ids}
        self.results: list[Any] = []
        self.inflight: list[Any] = []
        self.stop = threading.Event()
        self.rng, self.counter = random.Random(n), 0

    def run(self) -> None:
        while not self.stop.is_set():
            # Unfinished tasks of this thread, any of them: a killed batch waiting for its redelivery
            # must not hold the others back (later writes to its products make it stale when it returns).
            while len(self.inflight) >= INFLIGHT and not self.stop.is_set():
                self.inflight = [r for r in self.inflight if not r.ready()]
                if len(self.inflight) >= INFLIGHT:
                    time.sleep(0.2)
            pids = self.rng.sample(self.ids, BATCH)
            if self.rng.random() < 0.25:
                self._send("niteru.products.delete", {"product_id": pids[0]}, {pids[0]: None})
                continue
            items: list[dict[str, Any]] = []
            states: dict[str, dict[str, str] | None] = {}
            for pid in pids:
                row = self.rng.choice(self.rows)
                self.counter += 1
                title = f"{pid} w{self.counter} {row['title'][:60]}"
                fields = {"shop_id": row["shop_id"], "title": title, "category": row["category"]}
                items.append({"product_id": pid, "image": row["image"], "fields": fields})
                states[pid] = {"title": title, "image": row["image"]}
            self._send("niteru.images.registered_many", {"items": items}, states)

    def _send(self, name: str, kwargs: dict[str, Any], states: dict[str, dict[str, str] | None]) -> None:
        try:
            sent = self.app.send_task(name, kwargs=kwargs, queue=self.queue)
        except Exception as exc:  # the broker refused: nothing was promised
            for pid, state in states.items():
                self.ledger[pid].maybe(state)
            self.stats.note(name, type(exc).__name__, False)
            time.sleep(0.5)
            return
        for pid, state in states.items():
            self.ledger[pid].ack(state)
        self.results.append(sent)
        self.inflight.append(sent)
        self.stats.note(name, "sent", True, acked=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ids", type=int, default=30)
    ap.add_argument("--products", type=int, default=300)
    ap.add_argument("--catalog", type=Path, default=None)
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args()
    from celery import Celery

    from niteru.settings import Settings, get_settings
    from niteru.store import open_store

    catalog = (args.catalog or get_settings().catalog_dir).resolve()
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="niteru-soak-celery-")) / "data"
    queue = f"niteru-soak-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NITERU_DATA_DIR": str(data),
        "NITERU_CATALOG_DIR": str(catalog),
        "NITERU_CELERY_BROKER_URL": BROKER,
        "NITERU_CELERY_RESULT_BACKEND": BACKEND,
        "NITERU_CELERY_QUEUE": queue,
        # the shortest the settings allow, so that a killed worker's batch comes back within the run
        "NITERU_REBUILD_LOCK_TIMEOUT": "60",
        "NITERU_CELERY_VISIBILITY_TIMEOUT": "61",
        "NITERU_LOG_LEVEL": "WARNING",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    log = data.parent / "soak-worker.log"
    rows = prepare(data, catalog, args.products, env, log)
    app = Celery("shop-backend", broker=BROKER, backend=BACKEND)
    stats = Stats()
    senders = [
        Sender(n, app, queue, rows, [f"soakc-{n}-{i}" for i in range(args.ids)], stats) for n in range(args.threads)
    ]
    worker = Worker(env, log)
    worker.start()
    t0, duration = time.monotonic(), args.minutes * 60
    for s in senders:
        s.start()
    faults: list[dict[str, Any]] = []

    def at(fraction: float) -> None:
        time.sleep(max(0.0, t0 + fraction * duration - time.monotonic()))

    def kill() -> None:
        worker.stop(signal.SIGKILL)  # mid-batch: the senders keep the queue busy
        faults.append({"at": round(time.monotonic() - t0, 1), "fault": "worker SIGKILL + restart"})
        worker.start()

    at(0.3)
    kill()
    at(0.45)
    rebuild = app.send_task("niteru.collection.rebuild", queue=queue)
    at(0.6)
    kill()
    at(1.0)
    for s in senders:
        s.stop.set()
        s.join(120)
    outcomes: Counter[str] = Counter()
    items: Counter[str] = Counter()
    for s in senders:
        for r in s.results:
            value = r.get(timeout=1800, propagate=False)
            outcomes[value.get("status", "?") if isinstance(value, dict) else type(value).__name__] += 1
            for item in value.get("items", []) if isinstance(value, dict) else []:
                items[item["status"]] += 1
    faults.append({"fault": "rebuild", "result": rebuild.get(timeout=1800, propagate=False)})
    worker.stop()
    lost: list[dict[str, Any]] = []
    with open_store(Settings(data_dir=data)) as store:
        for s in senders:
            for pid, ledger in s.ledger.items():
                if not ledger.known:
                    continue
                point = store.get(pid)
                got = None if point is None else {"title": point.product.title, "image": point.product.image}
                if got != ledger.acked and got not in ledger.uncertain:
                    lost.append({"product_id": pid, "expected": ledger.acked, "found": got})
    report = {
        "mode": "celery",
        "minutes": round((time.monotonic() - t0) / 60, 2),
        "tasks_sent": sum(stats.requests.values()),
        "acknowledged_writes": stats.acked,
        "task_outcomes": dict(outcomes),
        "batch_item_outcomes": dict(items),
        "products_checked": sum(ledger.known for s in senders for ledger in s.ledger.values()),
        "lost_writes": len(lost),
        "lost_details": lost[:20],
        "send_errors": dict(stats.statuses),
        "longest_send_unavailability_seconds": round(longest_gap(stats.events), 1),
        "faults": faults,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "data_dir": str(data),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak-celery.json").write_text(json.dumps(report, indent=2, default=str))
    render()
    print(json.dumps(report, indent=2, default=str))
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
