"""What the API and the workers keep in Redis beside Celery: submitted ids (a just-queued task reads as
``queued``, not unknown), the version stamped at a task's first delivery, per-attempt delivery counts.
Real local Redis, no worker: nothing listens on the test's own queue, so the task stays queued."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from api.task_gateway import TaskGateway
from jobs import deliveries, registry
from niteru.settings import Settings

BROKER, BACKEND = "redis://127.0.0.1:6379/12", "redis://127.0.0.1:6379/13"


@pytest.fixture
def settings() -> Iterator[Settings]:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run starts it; `redis-server --daemonize yes`)")
    queue = f"niteru-bookkeeping-{uuid.uuid4().hex[:8]}"
    yield Settings(jobs_executor="celery", celery_broker_url=BROKER, celery_result_backend=BACKEND, celery_queue=queue)
    deliveries.client(Settings(celery_result_backend=BROKER)).delete(queue)  # the never-consumed messages


def test_a_just_queued_celery_task_reads_as_queued_not_unknown(settings: Settings) -> None:
    gateway = TaskGateway(settings, None, {}).start()
    sent = gateway.submit(registry.DELETE, {"product_id": "p1", "version": 1})
    assert gateway.state(sent["task_id"]) == {"task_id": sent["task_id"], "name": registry.DELETE, "status": "queued"}
    assert gateway.state(str(uuid.uuid4())) is None  # never submitted: unknown
    expires = deliveries.client(settings).ttl(f"{deliveries.PREFIX}{sent['task_id']}:submitted")
    assert 0 < expires <= settings.jobs_result_expires  # expires with the results


def test_a_first_delivery_stamp_is_kept_and_deliveries_are_counted_per_attempt(settings: Settings) -> None:
    task_id = str(uuid.uuid4())
    first = deliveries.first_delivery_version(settings, task_id)
    assert deliveries.first_delivery_version(settings, task_id) == first  # a redelivery keeps the stamp
    assert [deliveries.count_delivery(settings, task_id, 0) for _ in range(3)] == [1, 2, 3]
    assert deliveries.count_delivery(settings, task_id, 1) == 1  # a retry is a new attempt
