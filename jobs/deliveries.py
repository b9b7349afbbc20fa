"""What Celery does not keep per task, kept in Redis beside the results (and expiring with them).

- **Submitted ids** (``mark_submitted``, by the API before it sends): Celery reads a waiting task and an
  unknown one alike as PENDING; with the id recorded, ``GET /v1/tasks/{id}`` answers ``queued``.
- **The version stamp** (``first_delivery_version``): a task sent without a version (a shop calling
  ``send_task`` directly) gets the time of its first delivery, kept across redeliveries and retries, so a
  redelivered older task still compares as older. ``POST /v1/tasks`` stamps at submission, earlier.
- **Deliveries** (``count_delivery``): a task that kills its worker (out of memory) is given back by Redis
  and would kill the next worker too, forever. Each attempt's deliveries are counted; past
  ``jobs_max_deliveries`` the worker records a permanent ``worker_lost`` failure instead of running it.

One client per process, made on first use from the result backend's URL; nothing connects at import.
"""

from __future__ import annotations

import functools
from typing import Any

from niteru.products import now_version
from niteru.settings import Settings

PREFIX = "niteru:task:"


@functools.cache
def _client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def client(settings: Settings) -> Any:
    return _client(settings.celery_result_backend)


def mark_submitted(settings: Settings, task_id: str, name: str) -> None:
    client(settings).set(f"{PREFIX}{task_id}:submitted", name, ex=settings.jobs_result_expires)


def submitted_name(settings: Settings, task_id: str) -> str | None:
    """The task's name if it was submitted through the API and its record has not expired."""
    raw = client(settings).get(f"{PREFIX}{task_id}:submitted")
    return None if raw is None else raw.decode()


def first_delivery_version(settings: Settings, task_id: str) -> int:
    """The version stamped at this task's first delivery (set now if this is the first)."""
    key = f"{PREFIX}{task_id}:version"
    redis = client(settings)
    redis.set(key, now_version(), nx=True, ex=settings.jobs_result_expires)
    return int(redis.get(key))


def count_delivery(settings: Settings, task_id: str, attempt: int) -> int:
    """How many times this attempt (a retry is a new attempt) has been delivered, this one included."""
    key = f"{PREFIX}{task_id}:{attempt}:deliveries"
    pipe = client(settings).pipeline()
    pipe.incr(key)
    pipe.expire(key, settings.jobs_result_expires)
    count, _ = pipe.execute()
    return int(count)
