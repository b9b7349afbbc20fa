"""The public task contract, executor-neutral: names, what each does, and what it asks to run next.

Celery tasks (``jobs/tasks.py``) and the in-process executor of the embedded deployment
(``jobs/inline.py``) both call ``perform``; they differ only in how a follow-up task is sent and how a
transient error is retried. Permanent failures are recorded here, once, for both.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from jobs.batch import register_images
from jobs.failures import record_failure
from jobs.work import JobContext, PermanentJobError, delete_product, register_image, upsert_product

log = logging.getLogger(__name__)

UPSERT = "niteru.products.upsert"
IMAGE = "niteru.images.registered"
IMAGES = "niteru.images.registered_many"
DELETE = "niteru.products.delete"
REBUILD = "niteru.collection.rebuild"
NAMES = (UPSERT, IMAGE, IMAGES, DELETE, REBUILD)


@dataclass
class Outcome:
    result: dict[str, Any]
    # Tasks to send after this one: (name, kwargs). An upsert whose image changed asks for an image task;
    # a batch re-sends its transiently failed items one by one (they then retry with backoff).
    follow_ups: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def note_follow_up(name: str, result: dict[str, Any], follow_id: str) -> None:
    """Put a sent follow-up's task id in the result: an upsert's image task, a batch's re-sent items."""
    if name == UPSERT:
        result["image_task"] = follow_id
    else:
        result.setdefault("retry_tasks", []).append(follow_id)


def _record(
    ctx: JobContext, name: str, task_id: str, product_id: str, exc: PermanentJobError, args: dict[str, Any]
) -> dict[str, Any]:
    record_failure(ctx.settings, name, task_id, product_id, exc.reason, exc.message, args)
    log.warning("%s %s failed for good: %s", name, product_id, exc)
    return {"product_id": product_id, "status": "failed", "reason": exc.reason, "message": exc.message}


def perform(ctx: JobContext, name: str, kwargs: dict[str, Any], task_id: str = "") -> Outcome:
    """Run task ``name``. Raises ``TransientJobError`` (retry later); permanent failures are recorded and
    returned as ``status: failed``."""
    if name == UPSERT:
        return _upsert(ctx, kwargs, task_id)
    if name == IMAGE:
        pid = kwargs["product_id"]
        try:
            return Outcome(register_image(ctx, pid, kwargs["image"], kwargs.get("image_version"), kwargs.get("fields")))
        except PermanentJobError as exc:
            return Outcome(
                _record(ctx, name, task_id, pid, exc, {k: v for k, v in kwargs.items() if k != "product_id"})
            )
    if name == IMAGES:
        return _images(ctx, kwargs["items"], task_id)
    if name == DELETE:
        return Outcome(delete_product(ctx, kwargs["product_id"]))
    if name == REBUILD:
        from niteru.rebuild import rebuild

        report = rebuild(ctx.store, ctx.settings)
        return Outcome(report.__dict__)
    raise ValueError(f"unknown task {name!r}; known: {', '.join(NAMES)}")


def _upsert(ctx: JobContext, kwargs: dict[str, Any], task_id: str) -> Outcome:
    pid, fields = kwargs["product_id"], kwargs["fields"]
    image, version = kwargs.get("image"), kwargs.get("image_version")
    try:
        result = upsert_product(ctx, pid, fields, image, version)
    except PermanentJobError as exc:
        return Outcome(
            _record(ctx, UPSERT, task_id, pid, exc, {"fields": fields, "image": image, "image_version": version})
        )
    if result["status"] != "needs_image":
        return Outcome(result)
    follow = {"product_id": pid, "image": image, "image_version": version, "fields": fields}
    return Outcome(result, [(IMAGE, follow)])


def _images(ctx: JobContext, items: list[Any], task_id: str) -> Outcome:
    limit = ctx.settings.jobs_image_batch_max
    if not isinstance(items, list) or len(items) > limit:
        exc = PermanentJobError(
            "invalid_batch", f"items must be a list of at most {limit} (NITERU_JOBS_IMAGE_BATCH_MAX)"
        )
        return Outcome(
            _record(ctx, IMAGES, task_id, "", exc, {"items": len(items) if isinstance(items, list) else None})
        )
    results = register_images(ctx, items)
    follow_ups: list[tuple[str, dict[str, Any]]] = []
    for item, res in zip(items, results, strict=True):
        if res["status"] == "failed":
            args = {k: v for k, v in item.items() if k != "product_id"} if isinstance(item, dict) else {"item": item}
            record_failure(ctx.settings, IMAGES, task_id, res["product_id"], res["reason"], res["message"], args)
        elif res["status"] == "retry":
            follow_ups.append((IMAGE, dict(item)))
            res["status"] = "retrying"  # as its own single task, with backoff
    counts = Counter(r["status"] for r in results)
    return Outcome({"status": "done", "counts": dict(counts), "items": results}, follow_ups)
