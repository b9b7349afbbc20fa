"""Celery jobs with a real worker process against the local Redis (issue 6).

The embedded store admits one process, so the worker owns a copy of the ingested slice's data folder
while it runs: the test observes what it wrote through task results, and opens the store only after the
worker stopped. The client side uses nothing but the ``celery`` package and the task names, as a shop
backend would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from celery import Celery

from niteru.settings import Settings
from niteru.store import open_store
from tests.store_fixtures import Ingested

pytestmark = [pytest.mark.weights, pytest.mark.catalog, pytest.mark.slow]
REDIS = ("127.0.0.1", 6379)
BROKER, BACKEND = "redis://127.0.0.1:6379/14", "redis://127.0.0.1:6379/15"
CELERY = Path(sys.executable).parent / "celery"


def redis_up() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def worker_env(ingested: Ingested, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not redis_up():
        pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run starts it; `redis-server --daemonize yes`)")
    data = tmp_path_factory.mktemp("worker") / "data"
    shutil.copytree(ingested.settings.data_dir, data)
    return {
        **os.environ,
        "NITERU_DATA_DIR": str(data),
        "NITERU_CATALOG_DIR": str(ingested.catalog),
        "NITERU_CELERY_BROKER_URL": BROKER,
        "NITERU_CELERY_RESULT_BACKEND": BACKEND,
        "NITERU_CELERY_QUEUE": f"niteru-test-{uuid.uuid4().hex[:8]}",
        # The shortest the settings allow (above the rebuild lock's): a killed worker's task comes back soon.
        "NITERU_REBUILD_LOCK_TIMEOUT": "60",
        "NITERU_CELERY_VISIBILITY_TIMEOUT": "61",
        "NITERU_IMAGE_FETCH_ALLOW_HOSTS": '["127.0.0.1"]',
        "NITERU_JOBS_MAX_RETRIES": "2",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        cmd = [str(CELERY), "-A", "jobs.celery_app", "worker", "--pool", "solo", "-Q", env["NITERU_CELERY_QUEUE"]]
        with log.open("ab") as out:
            self.proc = subprocess.Popen([*cmd, "--loglevel", "INFO"], env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def client(worker_env: dict[str, str]) -> Celery:
    return Celery("shop-backend", broker=BROKER, backend=BACKEND)


def send(client: Celery, env: dict[str, str], name: str, **kwargs: Any) -> Any:
    return client.send_task(name, kwargs=kwargs, queue=env["NITERU_CELERY_QUEUE"])


class _SlowImage(BaseHTTPRequestHandler):
    """Serves one real catalog image, holding the first request until ``release`` is set: the test kills
    the worker once ``arrived`` says the worker is inside the task, waiting on this download."""

    body = b""
    arrived: threading.Event
    release: threading.Event

    def do_GET(self) -> None:
        _SlowImage.arrived.set()
        if not _SlowImage.release.wait(timeout=300):
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def slow_server(ingested: Ingested) -> Iterator[str]:
    _SlowImage.body = (ingested.catalog / ingested.good[3].image).read_bytes()
    _SlowImage.arrived, _SlowImage.release = threading.Event(), threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowImage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slow.jpg"
    server.shutdown()


def test_tasks_by_name_stale_versions_and_a_recorded_failure(
    client: Celery, worker_env: dict[str, str], ingested: Ingested, tmp_path: Path
) -> None:
    src, other = ingested.good[0], ingested.good[1]
    fields = {"shop_id": "shop-x", "title": src.title, "category": src.category, "description": src.description}
    worker = Worker(worker_env, tmp_path / "worker.log")
    try:
        created = send(
            client,
            worker_env,
            "niteru.images.registered",
            product_id="job-1",
            image=src.image,
            image_version=100,
            fields=fields,
        ).get(timeout=180)
        assert created["status"] == "created", created
        # an older image arriving late is refused by the conditional write; a newer one replaces
        late = send(
            client, worker_env, "niteru.images.registered", product_id="job-1", image=other.image, image_version=50
        ).get(timeout=60)
        assert late["status"] == "stale"
        # the same task delivered twice (a redelivery) changes nothing
        again = send(
            client, worker_env, "niteru.images.registered", product_id="job-1", image=src.image, image_version=100
        ).get(timeout=60)
        assert again["status"] == "unchanged"
        # a text update of the stored product keeps its image; a new product's upsert asks for the image task
        renamed = send(
            client,
            worker_env,
            "niteru.products.upsert",
            product_id="job-1",
            fields=fields | {"title": "Renamed " + src.title},
        ).get(timeout=60)
        assert renamed["status"] == "updated"
        fresh = send(
            client,
            worker_env,
            "niteru.products.upsert",
            product_id="job-2",
            fields=fields,
            image=other.image,
            image_version=7,
        ).get(timeout=60)
        assert (
            fresh["status"] == "needs_image"
            and client.AsyncResult(fresh["image_task"]).get(timeout=60)["status"] == "created"
        )
        gone = send(client, worker_env, "niteru.products.delete", product_id="job-2").get(timeout=60)
        assert gone["status"] == "deleted"

        corrupt = send(
            client,
            worker_env,
            "niteru.images.registered",
            product_id="job-3",
            image="images/bad-corrupt-image.jpg",
            fields=fields,
        )
        body = corrupt.get(timeout=60)
        assert (body["status"], body["reason"]) == ("failed", "corrupt")
        unsafe = send(
            client,
            worker_env,
            "niteru.images.registered",
            product_id="job-4",
            image="file:///etc/passwd",
            fields=fields,
        ).get(timeout=60)
        assert (unsafe["status"], unsafe["reason"]) == ("failed", "unsafe_url")
        # many images in one task: embedded as one batch; a bad item fails alone
        batch = send(
            client,
            worker_env,
            "niteru.images.registered_many",
            items=[
                {"product_id": "job-5", "image": ingested.good[7].image, "fields": fields},
                {"product_id": "job-6", "image": "images/bad-text-as-image.jpg", "fields": fields},
                {"product_id": "job-7", "image": ingested.good[8].image, "fields": fields, "image_version": 3},
            ],
        ).get(timeout=120)
        assert [i["status"] for i in batch["items"]] == ["created", "failed", "created"], batch
        assert batch["counts"] == {"created": 2, "failed": 1}
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert "Retry in" not in log  # permanent failures are not retried
    data = Path(worker_env["NITERU_DATA_DIR"])
    failures = [json.loads(line) for line in (data / "reports" / "task-failures.jsonl").read_text().splitlines()]
    assert [(f["product_id"], f["reason"]) for f in failures[-3:]] == [
        ("job-3", "corrupt"),
        ("job-4", "unsafe_url"),
        ("job-6", "not_an_image"),
    ]
    assert failures[-3]["task_id"] == corrupt.id
    # now that the worker has let go of the store, look at what it wrote
    with open_store(Settings(data_dir=data)) as store:
        stored = store.get("job-1", with_vectors=True)
        assert stored is not None and stored.product.image_version == 100 and stored.product.title.startswith("Renamed")
        image = ingested.embedders.image
        expected = image.embed_one((ingested.catalog / src.image).read_bytes())
        assert float(np.dot(stored.vectors["image"], expected)) == pytest.approx(1.0, abs=1e-4)
        assert store.get("job-2") is None and store.get("job-3") is None


def test_a_worker_killed_mid_task_has_its_task_redelivered_and_completed(
    client: Celery, worker_env: dict[str, str], slow_server: str, tmp_path: Path
) -> None:
    fields = {"shop_id": "shop-y", "title": "Slow photo product", "category": "fashion"}
    first = Worker(worker_env, tmp_path / "first.log")
    result = send(
        client,
        worker_env,
        "niteru.images.registered",
        product_id="job-slow",
        image=slow_server,
        image_version=5,
        fields=fields,
    )
    # the worker's request for the image reaches the server: it is inside the task, mid-download
    assert _SlowImage.arrived.wait(timeout=180), "the first worker never fetched the image"
    first.stop(signal.SIGKILL)  # the task is neither done nor acknowledged
    assert result.state in ("PENDING", "STARTED")
    _SlowImage.release.set()  # the redelivered task's download is served at once
    second = Worker(worker_env, tmp_path / "second.log")
    try:
        assert result.get(timeout=180)["status"] == "created"
    finally:
        second.stop()


class _Hang(BaseHTTPRequestHandler):
    """An image download that never ends: the worker is inside the task when ``arrived`` is set, and the
    test kills it there, as the kernel's OOM killer would."""

    arrived = threading.Event()

    def do_GET(self) -> None:
        _Hang.arrived.set()
        threading.Event().wait(600)

    def log_message(self, format: str, *args: object) -> None:
        return


def test_a_task_that_keeps_killing_its_worker_is_recorded_not_redelivered_forever(
    client: Celery, worker_env: dict[str, str], tmp_path: Path
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hang)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = worker_env | {"NITERU_JOBS_MAX_DELIVERIES": "1", "NITERU_CELERY_QUEUE": f"niteru-oom-{uuid.uuid4().hex[:8]}"}
    fields = {"shop_id": "shop-z", "title": "Killer photo product", "category": "fashion"}
    url = f"http://127.0.0.1:{server.server_address[1]}/huge.jpg"
    result = send(client, env, "niteru.images.registered", product_id="job-oom", image=url, fields=fields)
    first = Worker(env, tmp_path / "first.log")
    try:
        assert _Hang.arrived.wait(timeout=180), "the worker never fetched the image"
        first.stop(signal.SIGKILL)
        second = Worker(env, tmp_path / "second.log")  # the second delivery is past the limit of one
        try:
            body = result.get(timeout=240)
        finally:
            second.stop()
    finally:
        server.shutdown()
    assert (body["status"], body["reason"]) == ("failed", "worker_lost"), body
    failures = (Path(env["NITERU_DATA_DIR"]) / "reports" / "task-failures.jsonl").read_text().splitlines()
    recorded = json.loads(failures[-1])
    assert (recorded["task_id"], recorded["reason"]) == (result.id, "worker_lost")
    assert recorded["arguments"]["image_version"] > 0  # stamped at the first delivery, kept for the record
