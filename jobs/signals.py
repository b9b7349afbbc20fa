"""Celery signal handlers: request ids across the broker, task metrics, worker logging and /metrics.

``install_signals`` is called by ``create_celery``; the handlers are connected once per process
(``dispatch_uid``), whichever app is built first, since Celery's signals are process-wide.

- ``before_task_publish`` (the sending process, e.g. the API): copies the current request id into the
  message headers and counts the task as published.
- ``task_prerun``/``task_postrun`` (the worker): set the request id for the task's log lines, time the
  task, count it by final state. A task that records a permanent failure returns ``status: failed``
  rather than raising, so it is counted as a failure of kind ``permanent``.
- ``setup_logging``: the worker logs through ``niteru.logs`` (JSON) instead of Celery's own set-up.
- ``worker_init``: the worker serves its own Prometheus metrics on ``worker_metrics_port``, from the
  worker's main process, where ``--pool solo`` (the documented pool) and ``--pool threads`` run the tasks.
"""

from __future__ import annotations

import logging
import time
from contextvars import Token
from typing import Any

from celery import Celery, Task, signals

from niteru.logs import request_id_var, setup_logging, valid_request_id
from niteru.metrics import get_metrics
from niteru.settings import Settings

log = logging.getLogger(__name__)
HEADER = "request_id"

# Per running task (by id): its start time and the token restoring the worker's request id afterwards.
_running: dict[str, tuple[float, Token[str | None]]] = {}


def _on_publish(sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = request_id_var.get()
    if headers is not None and request_id is not None:
        headers.setdefault(HEADER, request_id)
    get_metrics().tasks_published.labels(sender or "unknown").inc()


def _on_prerun(task_id: str, task: Task, **_: Any) -> None:
    # Celery hands a message's custom headers to the task as attributes of its request.
    given = getattr(task.request, HEADER, None)
    token = request_id_var.set(valid_request_id(given) if isinstance(given, str) else None)
    _running[task_id] = (time.perf_counter(), token)


def _on_postrun(task_id: str, task: Task, retval: Any = None, state: str | None = None, **_: Any) -> None:
    metrics = get_metrics()
    started = _running.pop(task_id, None)
    if started is not None:
        metrics.task_duration.labels(task.name).observe(time.perf_counter() - started[0])
        request_id_var.reset(started[1])
    metrics.tasks.labels(task.name, state or "UNKNOWN").inc()
    if state == "SUCCESS" and isinstance(retval, dict) and retval.get("status") == "failed":
        metrics.task_failures.labels(task.name, "permanent").inc()


def _on_failure(sender: Task | None = None, **_: Any) -> None:
    get_metrics().task_failures.labels(getattr(sender, "name", "unknown"), "exception").inc()


def _on_retry(sender: Task | None = None, **_: Any) -> None:
    get_metrics().task_retries.labels(getattr(sender, "name", "unknown")).inc()


def _on_setup_logging(loglevel: str | int | None = None, **_: Any) -> None:
    from celery import current_app

    conf = current_app.conf
    setup_logging(loglevel or conf.get("niteru_log_level") or "INFO", conf.get("niteru_log_format") or "json")


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    port = int(sender.app.conf.get("niteru_worker_metrics_port") or 0) if sender is not None else 0
    if port == 0:
        return
    from prometheus_client import start_http_server

    get_metrics()  # the families exist before the first scrape
    try:
        start_http_server(port)
    except OSError as exc:  # a second worker on the same host: it works on, without its own /metrics
        log.warning("worker metrics not served on port %d: %s", port, exc)
        return
    log.info("worker metrics on :%d/metrics", port)


def install_signals(celery: Celery, settings: Settings) -> None:
    """Connect the handlers (once per process) and give the worker-side ones their settings."""
    celery.conf.update(
        niteru_worker_metrics_port=settings.worker_metrics_port,
        niteru_log_level=settings.log_level,
        niteru_log_format=settings.log_format,
    )
    for signal, handler in (
        (signals.before_task_publish, _on_publish),
        (signals.task_prerun, _on_prerun),
        (signals.task_postrun, _on_postrun),
        (signals.task_failure, _on_failure),
        (signals.task_retry, _on_retry),
        (signals.setup_logging, _on_setup_logging),
        (signals.worker_init, _on_worker_init),
    ):
        signal.connect(handler, weak=False, dispatch_uid=f"niteru.{handler.__name__}")
