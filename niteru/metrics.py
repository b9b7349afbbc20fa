"""Prometheus metrics of the API and the worker, in the process's default registry.

The metric objects are made on first use (``get_metrics``), not at import, and once per process: the
tests build many apps in one process, and a second registration of a name would fail. The default
registry also brings the ``process_*`` and ``python_*`` metrics of prometheus_client.

The queue length is read from the broker at scrape time (``read_queue_length``) with a short timeout;
an unreachable broker gives NaN, never a failed scrape.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger(__name__)

# Request latency: from a few ms (a product read) to tens of seconds (a filtered scan under load).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True)
class Metrics:
    requests: Histogram
    embedding: Histogram
    store: Histogram
    tasks_published: Counter
    tasks: Counter
    task_failures: Counter
    task_retries: Counter
    task_duration: Histogram
    queue_length: Gauge
    relevance: Gauge


@lru_cache(maxsize=1)
def get_metrics() -> Metrics:
    return Metrics(
        requests=Histogram(
            "niteru_http_request_duration_seconds",
            "API request latency by route template, retrieval mode, method and status.",
            ["route", "mode", "method", "status"],
            buckets=LATENCY_BUCKETS,
        ),
        embedding=Histogram(
            "niteru_embedding_duration_seconds",
            "Time in a model per call (image, text, category) in the API.",
            ["model"],
            buckets=LATENCY_BUCKETS,
        ),
        store=Histogram(
            "niteru_store_query_duration_seconds",
            "Time in the vector store per call, by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
        ),
        tasks_published=Counter("niteru_tasks_published", "Tasks sent to the broker by this process.", ["task"]),
        tasks=Counter("niteru_tasks", "Tasks run by this worker, by final Celery state.", ["task", "state"]),
        task_failures=Counter(
            "niteru_task_failures",
            "Failed tasks: kind=exception (raised) or permanent (a bad input recorded, not retried).",
            ["task", "kind"],
        ),
        task_retries=Counter("niteru_task_retries", "Task retries scheduled.", ["task"]),
        task_duration=Histogram(
            "niteru_task_duration_seconds", "Task run time in the worker.", ["task"], buckets=TASK_BUCKETS
        ),
        queue_length=Gauge(
            "niteru_queue_length", "Messages waiting in the Celery queue (NaN: broker down).", ["queue"]
        ),
        relevance=Gauge(
            "niteru_relevance",
            "The serving collection's figures at the last rebuild's gate (p10, variant_r1, variant_r10, colour, "
            "brand), overall (category=all) and per category.",
            ["measure", "category"],
        ),
    )


def read_queue_length(broker_url: str, queue: str, timeout: float) -> float:
    """LLEN of the queue's Redis list (Celery's Redis transport keeps a queue as one list); NaN on error."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return math.nan
    import redis

    try:
        client = redis.Redis.from_url(broker_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return float(client.llen(queue))
        finally:
            client.close()
    except (redis.RedisError, OSError) as exc:
        log.debug("queue length unavailable: %s", exc)
        return math.nan
