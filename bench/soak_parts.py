"""What both soak modes share: the ledger of acknowledged writes, request statistics, the server
subprocess, the sample's preparation and the results page (``bench/soak.py``, ``bench/soak_celery.py``)."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
NITERU = Path(sys.executable).parent / "niteru"


@dataclass
class Ledger:
    """One product's history as a client saw it: the last acknowledged state and what came after it
    without an answer (the product may legitimately end in any of those)."""

    acked: dict[str, str] | None = None  # {"title", "image"}; None: absent
    uncertain: list[dict[str, str] | None] = field(default_factory=list)
    known: bool = False  # was any write acknowledged at all

    def ack(self, state: dict[str, str] | None) -> None:
        self.acked, self.uncertain, self.known = state, [], True

    def maybe(self, state: dict[str, str] | None) -> None:
        self.uncertain.append(state)


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    acked: int = 0
    events: list[tuple[float, bool]] = field(default_factory=list)  # (time, answered below 500)
    samples: list[str] = field(default_factory=list)  # the first 5xx answers, to say what they were
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, status: int | str, ok: bool, acked: bool = False) -> None:
        with self.lock:
            self.requests[kind] += 1
            self.statuses[f"{kind} {status}"] += 1
            self.acked += acked
            self.events.append((time.monotonic(), ok))


class Server:
    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout: float = 600) -> float:
        """Start and wait until ready; returns the seconds it took."""
        t0 = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(NITERU), "serve", "--port", str(self.port)], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        while time.monotonic() - t0 < timeout:
            assert self.proc.poll() is None, f"niteru serve exited; see {self.log}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError("niteru serve not ready")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def longest_gap(events: list[tuple[float, bool]]) -> float:
    """Longest stretch from a failed request (5xx, no answer) to the next answered one, any client."""
    longest, down_since = 0.0, None
    for at, ok in sorted(events):
        if not ok and down_since is None:
            down_since = at
        elif ok and down_since is not None:
            longest, down_since = max(longest, at - down_since), None
    return longest


def render() -> None:
    """bench/results/soak.md from the last runs of both modes (their JSON, git-ignored, beside it)."""
    parts = [
        "# Acknowledged-writes soak\n",
        "Written by `bench/soak.py` (inline) and `bench/soak_celery.py` (Celery) from their last runs; "
        "what each does is in its docstring. A lost write is a product whose final state, read after the "
        "last crash, is neither its last acknowledged state nor a later unanswered attempt.\n",
        "What this machine does not allow: there is no Qdrant server, and the embedded store admits one "
        "process. So the Celery mode runs one solo worker owning the Edge store, the clients send tasks "
        "with `send_task` as a shop backend does (an API on the same store cannot run beside the worker), "
        "there are no `similar` reads in that mode, workers are not scaled out, and Redis is not restarted "
        "(it is shared with other work here). The qdrant-client engine's local mode also admits one "
        "process, so it would change nothing of this.\n",
    ]
    headline = (
        "minutes",
        "requests",
        "tasks_sent",
        "acknowledged_writes",
        "tasks_accepted",
        "task_outcomes",
        "batch_item_outcomes",
        "products_checked",
        "lost_writes",
        "longest_unavailability_seconds",
        "longest_send_unavailability_seconds",
        "server_startups_seconds",
        "store_at_the_end",
        "error_samples",
        "loadavg",
    )
    for mode, name in (("inline", "soak.json"), ("celery", "soak-celery.json")):
        path = RESULTS / name
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        parts.append(f"## Mode {mode}\n\n| figure | value |\n|---|---|")
        parts += [f"| {k} | {json.dumps(r[k], default=str)} |" for k in headline if k in r]
        statuses = r.get("statuses") or r.get("send_errors") or {}
        parts.append("\n| request, answer | count |\n|---|---|")
        parts += [f"| {k} | {v} |" for k, v in sorted(statuses.items())]
        parts.append("\nFaults (seconds from the start):\n")
        parts += [f"- {json.dumps(f, default=str)}" for f in r.get("faults", [])]
        if r.get("lost_details"):
            parts.append("\nLost writes:\n")
            parts += [f"- {json.dumps(d, default=str)}" for d in r["lost_details"]]
        parts.append("")
    (RESULTS / "soak.md").write_text("\n".join(parts) + "\n")


def prepare(data: Path, catalog: Path, products: int, env: dict[str, str], log: Path) -> list[dict[str, Any]]:
    """Ingest a sample (trains the text model) unless the data folder has one; the rows the clients use."""
    if not (data / "models").is_dir():
        with log.open("ab") as out:
            subprocess.run(
                [str(NITERU), "ingest", str(catalog), "--limit", str(products)],
                env=env,
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
    from niteru.catalog import read_catalog

    rows = [r for r in read_catalog(catalog) if (catalog / r.image).is_file()]
    rows = random.Random(0).sample(rows, min(len(rows), 400))
    return [{"shop_id": r.shop_id, "title": r.title, "category": r.category, "image": r.image} for r in rows]


def run_task(url: str, name: str, timeout: float = 1800) -> dict[str, Any]:
    """Post a task and wait for its end (through restarts: its state is kept on disk)."""
    task_id = httpx.post(f"{url}/v1/tasks", json={"name": name, "kwargs": {}}, timeout=60).json()["task_id"]
    return wait_task(url, task_id, timeout)


def wait_task(url: str, task_id: str, timeout: float = 1800, http: httpx.Client | None = None) -> dict[str, Any]:
    """A task's final state; ``http``: a client to reuse (one per call costs a TLS context: slow by thousands)."""
    http = http or httpx.Client(timeout=30)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = http.get(f"{url}/v1/tasks/{task_id}")
            if answer.status_code == 404:
                # Finished long ago: the executor keeps the last 10,000 finished states, and a long soak
                # accepts more tasks than that. The products themselves are checked by ``check``.
                return {"task_id": task_id, "status": "expired"}
            state: dict[str, Any] = answer.json()
            if state.get("status") in ("succeeded", "failed"):
                return state
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    return {"task_id": task_id, "status": "timeout"}
