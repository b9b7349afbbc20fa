"""The public task contract for shop backends (names and JSON keyword arguments are stable):

- ``niteru.products.upsert(product_id, fields, image=None, image_version=None)``
- ``niteru.images.registered(product_id, image, image_version=None, fields=None)``
- ``niteru.products.delete(product_id)``

Thin wrappers over ``jobs.work``. Transient errors retry with exponential backoff and jitter (declared
here); permanent ones are recorded (``niteru jobs failures``) and end the task with ``status: failed``.
Tasks are acknowledged late and idempotent (see ``jobs.celery_app``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.signals import worker_process_shutdown

from jobs.celery_app import app
from jobs.failures import record_failure
from jobs.work import JobContext, PermanentJobError, TransientJobError, delete_product, register_image, upsert_product
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
    """The models and the store, loaded by the first task of this worker process."""
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


def _failed(task: Task, product_id: str, exc: PermanentJobError, arguments: dict[str, Any]) -> dict[str, Any]:
    record_failure(get_settings(), task.name, task.request.id or "", product_id, exc.reason, exc.message, arguments)
    log.warning("%s %s failed for good: %s", task.name, product_id, exc)
    return {"product_id": product_id, "status": "failed", "reason": exc.reason, "message": exc.message}


@app.task(name="niteru.products.upsert", bind=True, **RETRY)
def upsert_task(
    self: Task, product_id: str, fields: dict[str, Any], image: str | None = None, image_version: int | None = None
) -> dict[str, Any]:
    args = {"fields": fields, "image": image, "image_version": image_version}
    try:
        result = upsert_product(context(), product_id, fields, image, image_version)
    except PermanentJobError as exc:
        return _failed(self, product_id, exc, args)
    if result["status"] == "needs_image":
        assert image is not None
        sent = image_task.apply_async(
            kwargs={"product_id": product_id, "image": image, "image_version": image_version, "fields": fields},
            queue=get_settings().celery_queue,
        )
        result["image_task"] = sent.id
    return result


@app.task(name="niteru.images.registered", bind=True, **RETRY)
def image_task(
    self: Task,
    product_id: str,
    image: str,
    image_version: int | None = None,
    fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    try:
        return register_image(context(), product_id, image, image_version, fields)
    except PermanentJobError as exc:
        return _failed(self, product_id, exc, {"image": image, "image_version": image_version, "fields": fields})


@app.task(name="niteru.products.delete", bind=True, **RETRY)
def delete_task(self: Task, product_id: str) -> dict[str, Any]:
    return delete_product(context(), product_id)
