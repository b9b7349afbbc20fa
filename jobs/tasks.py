"""The public task contract for shop backends (names and JSON keyword arguments are stable):

- ``niteru.products.upsert(product_id, fields, image=None, image_version=None)``
- ``niteru.images.registered(product_id, image, image_version=None, fields=None)``
- ``niteru.images.registered_many(items)``: a list of the keyword arguments above, embedded as one batch
- ``niteru.products.delete(product_id, version=None)``
- ``niteru.collection.rebuild()``: the daily rebuild (beat sends it; ``niteru rebuild`` does it by hand)

The Celery tasks are generated from ``jobs.registry`` (arguments are checked there, by the task's model).
A version missing from the arguments is stamped at the task's first delivery and kept across
redeliveries (``jobs.deliveries``); an attempt delivered more than ``NITERU_JOBS_MAX_DELIVERIES`` times
(its worker keeps dying) fails as ``worker_lost``. Transient refusals retry with exponential backoff
and jitter (declared in the decorator below, limits from the app's configuration); permanent ones are
recorded (``niteru jobs failures``) and end the task with ``status: failed``. Tasks are acknowledged
late and idempotent (see ``jobs.celery_app``).
"""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.signals import worker_process_shutdown

from jobs import deliveries, registry
from jobs.celery_app import app
from jobs.context import JobContext
from niteru.refusals import Refusal
from niteru.settings import get_settings

_context: JobContext | None = None


def context() -> JobContext:
    """The models and the store, loaded by the first task of this worker process (``registry.perform``
    keeps them in step with the live collection)."""
    global _context
    if _context is None:
        _context = JobContext.load(get_settings())
    return _context


@worker_process_shutdown.connect
def _close_context(**_: object) -> None:
    global _context
    if _context is not None:
        _context.close()
        _context = None


def _run(task: Task, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    settings, task_id = app.conf.niteru_settings, task.request.id or ""
    if task_id:
        kwargs = registry.stamp(name, kwargs, deliveries.first_delivery_version(settings, task_id))
        delivered = deliveries.count_delivery(settings, task_id, task.request.retries or 0)
        if delivered > settings.jobs_max_deliveries:
            # Its worker died this many times running it (out of memory?): record it, do not run it again.
            message = f"delivered {delivered} times, its worker died each time (out of memory?); not run again"
            refusal = Refusal("worker_lost", message, product_id=str(kwargs.get("product_id") or ""))
            return registry.record(settings, name, task_id, refusal, kwargs)
    outcome = registry.perform(context(), name, kwargs, task_id)
    for follow, follow_kwargs in outcome.follow_ups:
        sent = app.send_task(follow, kwargs=follow_kwargs, queue=app.conf.task_default_queue)
        registry.note_follow_up(name, outcome.result, sent.id)
    return outcome.result


def _define(name: str, **retry: Any) -> Task:
    def run(self: Task, **kwargs: Any) -> dict[str, Any]:
        return _run(self, name, kwargs)

    # Only transient refusals leave ``registry.perform``: permanent ones are recorded and returned.
    return app.task(name=name, bind=True, autoretry_for=(Refusal,), **retry)(run)


# Product tasks retry quickly; the limits are the settings' (NITERU_JOBS_*), read when the app was made.
_PRODUCT_RETRY: dict[str, Any] = {
    "retry_backoff": 2,
    "retry_backoff_max": app.conf.niteru_retry_backoff_max,
    "retry_jitter": True,
    "max_retries": app.conf.niteru_max_retries,
}
TASKS = {name: _define(name, **_PRODUCT_RETRY) for name in registry.NAMES if name != registry.REBUILD}
# A failed rebuild is not retried within the day: the next scheduled run (or `niteru rebuild`) tries
# again, and the live collection stays as it was. It may take long: no time limit below the lock's.
TASKS[registry.REBUILD] = _define(registry.REBUILD, max_retries=2, retry_backoff=60)
