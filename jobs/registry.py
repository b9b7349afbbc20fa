"""The task registry: per public task name, one argument model and one handler.

``POST /v1/tasks`` checks a call with ``parse`` (a 422 before anything is queued); the Celery wrappers
(``jobs/tasks.py``) and the in-process executor (``jobs/inline.py``) run it with ``perform``; beat takes
the rebuild's name from here. The handlers are thin: products are written by ``niteru.writes``. Names and
keyword arguments are the stable contract documented in ``jobs/tasks.py``.

The argument models are strict, as a worker must be: ``"3"`` is not an ``image_version``, ``true`` is not
an integer, unknown keys are refused. A batch is checked item by item when it runs, so one bad item fails
alone (``invalid_item``) rather than sinking the batch.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from jobs.context import JobContext
from jobs.failures import record_failure
from niteru.products import MAX_VERSION, now_version
from niteru.refusals import Refusal, store_unavailable
from niteru.settings import Settings
from niteru.store import StoreUnavailableError
from niteru.write_inputs import ImageSource, ProductWrite
from niteru.writes import WriteResult

log = logging.getLogger(__name__)

UPSERT = "niteru.products.upsert"
IMAGE = "niteru.images.registered"
IMAGES = "niteru.images.registered_many"
DELETE = "niteru.products.delete"
REBUILD = "niteru.collection.rebuild"


# The one bound of every version, as PUT applies it: Qdrant compares range filters as float64.
Version = Annotated[int, Field(ge=0, le=MAX_VERSION)]


class TaskArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class UpsertArgs(TaskArgs):
    product_id: str
    fields: dict[str, Any]
    image: str | None = None
    image_version: Version | None = None


class ImageArgs(TaskArgs):
    product_id: str
    image: str
    image_version: Version | None = None
    fields: dict[str, Any] | None = None


class BadItem:
    """An item of a running batch that does not validate (never built from input: no model)."""

    def __init__(self, raw: object, message: str) -> None:
        self.raw = raw
        self.product_id = str(raw.get("product_id") or "") if isinstance(raw, dict) else ""
        self.message = message


class ImagesArgs(TaskArgs):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    items: list[ImageArgs | BadItem] = Field(min_length=1)

    @field_validator("items", mode="before")
    @classmethod
    def _each_item(cls, raw: object, info: ValidationInfo) -> object:
        context = info.context or {}
        limit = context.get("max_items")
        if isinstance(raw, list) and limit is not None and len(raw) > limit:
            raise ValueError(f"at most {limit} items per batch (NITERU_JOBS_IMAGE_BATCH_MAX)")
        if not context.get("per_item") or not isinstance(raw, list):
            return raw
        checked: list[ImageArgs | BadItem] = []
        for item in raw:
            try:
                checked.append(ImageArgs.model_validate(item))
            except ValidationError as exc:
                checked.append(BadItem(item, _errors(exc)))
        return checked


class DeleteArgs(TaskArgs):
    product_id: str
    # Orders the delete against writes of the same product (a tombstone of this version).
    version: Version | None = None


class RebuildArgs(TaskArgs):
    pass


@dataclass
class Outcome:
    result: dict[str, Any]
    # Tasks to send after this one: (name, kwargs). An upsert whose image changed asks for an image task;
    # a batch re-sends its transiently failed items one by one (they then retry with backoff).
    follow_ups: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


Handler = Callable[[JobContext, Any, str], Outcome]


@dataclass(frozen=True)
class TaskSpec:
    args: type[TaskArgs]
    handler: Handler


class UnknownTaskError(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown task {name!r}; known: {', '.join(NAMES)}")


def parse(name: str, kwargs: dict[str, Any], settings: Settings) -> TaskArgs:
    """A call's arguments, checked as a whole (``POST /v1/tasks``); raises ``UnknownTaskError`` or
    pydantic's ``ValidationError``."""
    spec = TASKS.get(name)
    if spec is None:
        raise UnknownTaskError(name)
    return spec.args.model_validate(kwargs, context={"max_items": settings.jobs_image_batch_max})


def stamp(name: str, kwargs: dict[str, Any], version: int | None = None) -> dict[str, Any]:
    """``kwargs`` with every missing version set to ``version`` (default: now), so that a task's order is
    the order it was submitted in, not the order it happens to run in (a redelivered older image task must
    not overwrite a newer image). Explicit versions are kept; nothing else changes."""
    at = now_version() if version is None else version

    def image(item: Any) -> Any:
        if isinstance(item, dict) and item.get("image") is not None and item.get("image_version") is None:
            return {**item, "image_version": at}
        return item

    if name in (UPSERT, IMAGE):
        return dict(image(kwargs))
    if name == IMAGES and isinstance(kwargs.get("items"), list):
        return {**kwargs, "items": [image(item) for item in kwargs["items"]]}
    if name == DELETE and kwargs.get("version") is None:
        return {**kwargs, "version": at}
    return dict(kwargs)


def perform(ctx: JobContext, name: str, kwargs: dict[str, Any], task_id: str = "") -> Outcome:
    """Run task ``name``. A transient ``Refusal`` is raised (retry later); a permanent one is recorded
    (``niteru jobs failures``) and returned as ``status: failed``."""
    spec = TASKS.get(name)
    if spec is None:
        raise UnknownTaskError(name)
    product_id = str(kwargs.get("product_id") or "")
    try:
        context = {"max_items": ctx.settings.jobs_image_batch_max, "per_item": True}
        args = spec.args.model_validate(kwargs, context=context)
    except ValidationError as exc:
        refusal = Refusal("invalid_arguments", _errors(exc)).of(product_id)
        return Outcome(record(ctx.settings, name, task_id, refusal, kwargs))
    try:
        ctx.refresh()
        return spec.handler(ctx, args, task_id)
    except StoreUnavailableError as exc:
        raise store_unavailable(exc) from exc
    except Refusal as refusal:
        if refusal.transient:
            raise
        return Outcome(record(ctx.settings, name, task_id, refusal.of(product_id), kwargs))


def note_follow_up(name: str, result: dict[str, Any], follow_id: str) -> None:
    """Put a sent follow-up's task id in the result: an upsert's image task, a batch's re-sent items."""
    if name == UPSERT:
        result["image_task"] = follow_id
    else:
        result.setdefault("retry_tasks", []).append(follow_id)


def record(settings: Settings, name: str, task_id: str, refusal: Refusal, kwargs: Any) -> dict[str, Any]:
    """Record a permanent failure (``niteru jobs failures``) and return it as the task's result."""
    arguments = {k: v for k, v in kwargs.items() if k != "product_id"} if isinstance(kwargs, dict) else {"item": kwargs}
    record_failure(settings, name, task_id, refusal.product_id, refusal.reason, refusal.message, arguments)
    log.warning("%s %s failed for good: %s", name, refusal.product_id, refusal)
    return refusal.as_result()


def _errors(exc: ValidationError) -> str:
    return str(exc.errors(include_url=False, include_context=False))


def _result(done: WriteResult) -> dict[str, Any]:
    out: dict[str, Any] = {"product_id": done.product_id, "status": done.status}
    if done.stored_version is not None:
        out["stored_version"] = done.stored_version
    elif done.status in ("created", "updated", "stale"):
        out["image_version"] = done.image_version
    return out


# --- the handlers ---------------------------------------------------------------------------------------
def upsert(ctx: JobContext, args: UpsertArgs, _: str) -> Outcome:
    """A product's fields changed. A stored product whose image reference is unchanged gets its new text
    vector now; otherwise the answer asks for an image task (``needs_image``), which embeds the image and
    the text, with this task's (stamped) image version."""
    pid = args.product_id
    if args.image is not None:
        stored = ctx.store.get(pid)
        # The reference decides, not the version: every submitted upsert carries one (stamped), and a
        # text update must not re-fetch an unchanged image. New content at the same address is an image task.
        if stored is None or stored.product.image != args.image:
            follow = {
                "product_id": pid,
                "image": args.image,
                "image_version": args.image_version,
                "fields": args.fields,
            }
            return Outcome({"product_id": pid, "status": "needs_image"}, [(IMAGE, follow)])
    done = ctx.writer().write(ProductWrite(pid, args.fields))
    return Outcome({"product_id": pid, "status": done.status})


def image(ctx: JobContext, args: ImageArgs, _: str) -> Outcome:
    """Fetch, embed and store a product's image (and its text); an older image never replaces a newer one."""
    write = ProductWrite(args.product_id, args.fields, ImageSource.of_ref(args.image), args.image_version)
    return Outcome(_result(ctx.writer().write(write)))


def images(ctx: JobContext, args: ImagesArgs, task_id: str) -> Outcome:
    """Many images in one task: downloads overlap, one embedding batch, one upsert. A bad item fails alone
    (recorded); an item whose download failed transiently is re-sent as its own image task."""
    results: list[dict[str, Any]] = []
    follow_ups: list[tuple[str, dict[str, Any]]] = []
    good = [item for item in args.items if isinstance(item, ImageArgs)]
    writes = [ProductWrite(i.product_id, i.fields, ImageSource.of_ref(i.image), i.image_version) for i in good]
    written = iter(ctx.writer().write_many(writes))
    for item in args.items:
        if isinstance(item, BadItem):
            out: WriteResult | Refusal = Refusal("invalid_item", item.message, product_id=item.product_id)
            raw = item.raw
        else:
            out, raw = next(written), item.model_dump(exclude_unset=True)
        if isinstance(out, WriteResult):
            results.append(_result(out))
        elif out.transient:
            follow_ups.append((IMAGE, raw if isinstance(raw, dict) else {}))
            results.append({"product_id": out.product_id, "status": "retrying", "message": out.message})
        else:
            results.append(record(ctx.settings, IMAGES, task_id, out, raw))
    log.info(
        "image batch: %d items, %d written", len(results), sum(r["status"] in ("created", "updated") for r in results)
    )
    return Outcome(
        {"status": "done", "counts": dict(Counter(r["status"] for r in results)), "items": results}, follow_ups
    )


def delete(ctx: JobContext, args: DeleteArgs, _: str) -> Outcome:
    found = ctx.writer().delete(args.product_id, args.version)
    return Outcome({"product_id": args.product_id, "status": "deleted" if found else "absent"})


def rebuild(ctx: JobContext, _args: RebuildArgs, _: str) -> Outcome:
    """The daily rebuild; one refused (another is running, too few products) is skipped until the next."""
    from niteru import rebuild as rebuilding

    try:
        return Outcome(rebuilding.rebuild(ctx.store, ctx.settings).__dict__)
    except rebuilding.RebuildError as exc:
        log.warning("rebuild not done: %s", exc)
        return Outcome({"status": "skipped", "reason": str(exc)})


TASKS: dict[str, TaskSpec] = {
    UPSERT: TaskSpec(UpsertArgs, upsert),
    IMAGE: TaskSpec(ImageArgs, image),
    IMAGES: TaskSpec(ImagesArgs, images),
    DELETE: TaskSpec(DeleteArgs, delete),
    REBUILD: TaskSpec(RebuildArgs, rebuild),
}
NAMES = tuple(TASKS)
