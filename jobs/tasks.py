"""The public task contract for shop backends (names and JSON keyword arguments are stable):

- ``niteru.products.upsert(product_id, fields, image=None, image_version=None)``
- ``niteru.images.registered(product_id, image, image_version=None, fields=None)``
- ``niteru.images.registered_many(items)``: a list of the keyword arguments above, embedded as one batch
- ``niteru.products.delete(product_id)``
- ``niteru.collection.rebuild()``: the daily rebuild (beat sends it; ``niteru rebuild`` does it by hand)

Thin wrappers over ``jobs.contract.perform``. Transient errors retry with exponential backoff and jitter
(declared here); permanent ones are recorded (``niteru jobs failures``) and end the task with
``status: failed``. Tasks are acknowledged late and idempotent (see ``jobs.celery_app``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.signals import worker_process_shutdown

from jobs import contract
from jobs.celery_app import app
from jobs.work import JobContext, TransientJobError
from niteru.settings import get_settings

log = logging.getLogger(__name__)
_settings = get_settings()
RETRY: dict[str, Any] = {
    "autoretry_for": (TransientJobError,),
    "retry_backoff": 2,
    "retry_backoff_max": _settings.jobs_retry_backoff_max,
    "retry_jitter": True,
    "max_retries": _settings.jobs_max_retries,
}
_context: JobContext | None = None


def context() -> JobContext:
    """The models and the store, loaded by the first task of this worker process and kept in step with
    the live collection (a rebuild elsewhere swaps in a new text model)."""
    global _context
    if _context is None:
        _context = JobContext.load(get_settings())
    else:
        _context.refresh()
    return _context


@worker_process_shutdown.connect
def _close_context(**_: object) -> None:
    global _context
    if _context is not None:
        _context.close()
        _context = None


def _run(task: Task, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    outcome = contract.perform(context(), name, kwargs, task.request.id or "")
    for follow, follow_kwargs in outcome.follow_ups:
        sent = app.send_task(follow, kwargs=follow_kwargs, queue=get_settings().celery_queue)
        contract.note_follow_up(name, outcome.result, sent.id)
    return outcome.result


@app.task(name=contract.UPSERT, bind=True, **RETRY)
def upsert_task(
    self: Task, product_id: str, fields: dict[str, Any], image: str | None = None, image_version: int | None = None
) -> dict[str, Any]:
    kwargs = {"product_id": product_id, "fields": fields, "image": image, "image_version": image_version}
    return _run(self, contract.UPSERT, kwargs)


@app.task(name=contract.IMAGE, bind=True, **RETRY)
def image_task(
    self: Task,
    product_id: str,
    image: str,
    image_version: int | None = None,
    fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    kwargs = {"product_id": product_id, "image": image, "image_version": image_version, "fields": fields}
    return _run(self, contract.IMAGE, kwargs)


@app.task(name=contract.IMAGES, bind=True, **RETRY)
def images_task(self: Task, items: list[Any]) -> dict[str, Any]:
    return _run(self, contract.IMAGES, {"items": items})


@app.task(name=contract.DELETE, bind=True, **RETRY)
def delete_task(self: Task, product_id: str) -> dict[str, Any]:
    return _run(self, contract.DELETE, {"product_id": product_id})


# A failed rebuild is not retried within the day: the next scheduled run (or `niteru rebuild`) tries
# again, and the live collection stays as it was. It may take long: no time limit below the lock's.
@app.task(name=contract.REBUILD, bind=True, autoretry_for=(TransientJobError,), max_retries=2, retry_backoff=60)
def rebuild_task(self: Task) -> dict[str, Any]:
    from niteru.rebuild import RebuildError

    try:
        return _run(self, contract.REBUILD, {})
    except RebuildError as exc:
        log.warning("rebuild not done: %s", exc)
        return {"status": "skipped", "reason": str(exc)}
