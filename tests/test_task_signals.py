"""Request ids and task metrics across a real broker: publish to the local Redis (db 13), read the
message back, and run it in a real (in-process, solo) Celery worker whose task logs and returns the
request id it sees; and a task posted to the API's ``/v1/tasks`` carries the request's id. The apps are
``create_celery``'s, so the signal handlers are the ones it installs.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from api.app import create_app
from jobs.celery_app import create_celery
from niteru.logs import JsonFormatter, RequestIdFilter, request_id_var
from niteru.settings import Settings
from tests.store_fixtures import Ingested

BROKER = "redis://127.0.0.1:6379/13"
log = logging.getLogger("niteru.tests.echo")


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def celery() -> Iterator[Celery]:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run starts it; `redis-server --daemonize yes`)")
    queue = f"niteru-signals-{uuid.uuid4().hex[:8]}"
    app = create_celery(
        Settings(celery_broker_url=BROKER, celery_result_backend=BROKER, celery_queue=queue, worker_metrics_port=0)
    )

    @app.task(name="niteru.tests.echo", bind=True, shared=False)  # type: ignore[untyped-decorator]
    def echo(self: Any, outcome: str = "ok") -> dict[str, Any]:
        log.info("echo ran")
        if outcome == "raise":
            raise ValueError("asked to fail")
        if outcome == "retry" and self.request.retries == 0:
            raise self.retry(countdown=0, max_retries=1)
        return {"request_id": request_id_var.get(), "status": "failed" if outcome == "permanent" else "ok"}

    yield app
    with app.connection_for_write() as conn:
        conn.default_channel.client.delete(queue)


def test_the_request_id_travels_in_the_task_headers(celery: Celery) -> None:
    queue = celery.conf.task_default_queue
    published = metric("niteru_tasks_published_total", task="niteru.tests.echo")
    token = request_id_var.set("req-api-123")
    try:
        celery.send_task("niteru.tests.echo", queue=queue)
    finally:
        request_id_var.reset(token)
    with celery.connection_for_write() as conn:
        raw = conn.default_channel.client.lpop(queue)
    message = json.loads(raw)
    assert message["headers"]["request_id"] == "req-api-123"
    assert message["headers"]["task"] == "niteru.tests.echo"
    assert metric("niteru_tasks_published_total", task="niteru.tests.echo") == published + 1


def test_a_worker_runs_the_task_with_the_request_id_and_counts_it(celery: Celery) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    name = "niteru.tests.echo"
    before = {state: metric("niteru_tasks_total", task=name, state=state) for state in ("SUCCESS", "FAILURE")} | {
        kind: metric("niteru_task_failures_total", task=name, kind=kind) for kind in ("exception", "permanent")
    }
    durations = metric("niteru_task_duration_seconds_count", task=name)
    retries = metric("niteru_task_retries_total", task=name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    celery.conf.niteru_worker_metrics_port = port
    try:
        # start_worker sets up the worker's logging (our setup_logging signal handler): ours is added after
        with start_worker(celery, pool="solo", perform_ping_check=False, loglevel="INFO", shutdown_timeout=30):
            log.addHandler(handler)
            token = request_id_var.set("req-api-456")
            try:
                ok = celery.send_task(name, queue=celery.conf.task_default_queue)
                permanent = celery.send_task(name, kwargs={"outcome": "permanent"})
                raised = celery.send_task(name, kwargs={"outcome": "raise"})
                retried = celery.send_task(name, kwargs={"outcome": "retry"})
            finally:
                request_id_var.reset(token)
            assert ok.get(timeout=60) == {"request_id": "req-api-456", "status": "ok"}
            assert permanent.get(timeout=60)["status"] == "failed"
            with pytest.raises(ValueError, match="asked to fail"):
                raised.get(timeout=60)
            assert retried.get(timeout=60) == {"request_id": "req-api-456", "status": "ok"}
            # the worker's own /metrics (started by the worker_init handler)
            scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            assert f'niteru_tasks_total{{state="SUCCESS",task="{name}"}}' in scraped
    finally:
        log.removeHandler(handler)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 5 and all(line["request_id"] == "req-api-456" for line in lines)
    assert request_id_var.get() is None  # the worker restored it after each task
    assert metric("niteru_tasks_total", task=name, state="SUCCESS") == before["SUCCESS"] + 3
    assert metric("niteru_task_retries_total", task=name) == retries + 1
    assert metric("niteru_tasks_total", task=name, state="FAILURE") == before["FAILURE"] + 1
    assert metric("niteru_task_failures_total", task=name, kind="exception") == before["exception"] + 1
    assert metric("niteru_task_failures_total", task=name, kind="permanent") == before["permanent"] + 1
    assert metric("niteru_task_duration_seconds_count", task=name) == durations + 5


@pytest.mark.weights
@pytest.mark.catalog
@pytest.mark.slow
def test_a_task_posted_to_the_api_carries_the_request_id(celery: Celery, ingested: Ingested) -> None:
    """End to end on the sending side: POST /v1/tasks (Celery executor) -> the message on the broker."""
    queue = celery.conf.task_default_queue
    settings = ingested.settings.model_copy(
        update={
            "jobs_executor": "celery",
            "celery_broker_url": BROKER,
            "celery_result_backend": BROKER,
            "celery_queue": queue,
        }
    )
    with TestClient(create_app(settings, embedders=ingested.embedders)) as client:
        sent = client.post(
            "/v1/tasks",
            json={"name": "niteru.products.delete", "kwargs": {"product_id": "p-1"}},
            headers={"X-Request-ID": "req-from-shop-99"},
        )
    assert sent.status_code == 202, sent.text
    with celery.connection_for_write() as conn:
        message = json.loads(conn.default_channel.client.lpop(queue))
    assert message["headers"]["id"] == sent.json()["task_id"]
    assert message["headers"]["request_id"] == "req-from-shop-99"
