"""``POST /v1/tasks`` behind one interface: Celery (Redis broker) or the inline executor.

A shop backend without Redis posts the same task names and keyword arguments it would give
``send_task``; with ``jobs_executor`` resolving to celery the API forwards them to the broker and reads
states from the result backend, so the HTTP contract does not change when a shop scales out.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from api.errors import ApiError, ServiceUnavailableError
from niteru.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

    from jobs.context import JobContext
    from jobs.inline import InlineExecutor, TaskState

log = logging.getLogger(__name__)
# Seconds a client is asked to wait when the inline queue is full: a few tasks' worth of work.
QUEUE_FULL_RETRY_AFTER = 30
Executor = Literal["celery", "inline"]
# Celery's state names, in the words of the inline executor.
CELERY_STATES = {
    "PENDING": "queued",
    "STARTED": "started",
    "RETRY": "retrying",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
}


class QueueFullApiError(ApiError):
    """503: the inline executor holds ``jobs_inline_queue_max`` tasks; nothing was queued."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, detail, {"Retry-After": str(QUEUE_FULL_RETRY_AFTER)})


def resolve_executor(settings: Settings) -> Executor:
    if settings.jobs_executor != "auto":
        return settings.jobs_executor
    return "inline" if settings.qdrant_url is None else "celery"


class TaskGateway:
    """``context``: the task handlers' view of this process's models and store, for the inline executor
    (None when a part is missing; ``problems`` says which)."""

    def __init__(
        self, settings: Settings, context: Callable[[], JobContext] | None, problems: Mapping[str, str]
    ) -> None:
        self.settings = settings
        self.executor: Executor = resolve_executor(settings)
        self._context = context
        self._problems = problems
        self._inline: InlineExecutor | None = None
        self._celery: Celery | None = None

    def start(self) -> TaskGateway:
        if self.executor == "celery":
            from jobs.celery_app import create_celery

            self._celery = create_celery(self.settings)  # connects lazily, on the first send
        elif self._context is not None:
            from jobs.inline import InlineExecutor

            self._inline = InlineExecutor(self.settings, self._context).start()
        return self

    def stop(self) -> None:
        if self._inline is not None:
            self._inline.stop()

    def submit(self, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Queue a task whose versions are stamped (``registry.stamp``): a 202 follows only once the task is
        in Redis, or in the inline executor's journal on disk. Raises ``ServiceUnavailableError`` (broker
        down) or ``QueueFullApiError`` (the inline queue is at its bound)."""
        if self._celery is not None:
            from jobs import deliveries

            task_id = str(uuid.uuid4())
            try:
                # Recorded before it is sent, so that a poll right after the 202 reads "queued", not unknown.
                deliveries.mark_submitted(self.settings, task_id, name)
                self._celery.send_task(name, kwargs=kwargs, queue=self.settings.celery_queue, task_id=task_id)
            except Exception as exc:  # redis and kombu raise ConnectionError, OperationalError...: "broker down"
                raise ServiceUnavailableError(f"task broker unavailable: {type(exc).__name__}") from exc
            return {"task_id": task_id, "name": name, "status": "queued"}
        from jobs.inline import QueueFullError

        try:
            return _as_dict(self._need_inline().submit(name, kwargs))
        except QueueFullError as exc:
            raise QueueFullApiError(str(exc)) from None

    def state(self, task_id: str) -> dict[str, Any] | None:
        if self._celery is not None:
            result = self._celery.AsyncResult(task_id)
            try:
                status, value = result.state, result.result
            except Exception as exc:
                raise ServiceUnavailableError(f"task result backend unavailable: {exc}") from exc
            if status == "PENDING":
                # Celery reads "waiting" and "unknown" alike; the id recorded at submission tells them apart.
                return self._submitted(task_id)
            out: dict[str, Any] = {
                "task_id": task_id,
                "name": result.name or "",
                "status": CELERY_STATES.get(status, status.lower()),
            }
            if isinstance(value, dict):
                out["result"] = value
                if value.get("status") == "failed":
                    out["status"] = "failed"
            elif value is not None:
                out["error"] = str(value)
            return out
        found = self._need_inline().state(task_id)
        return None if found is None else _as_dict(found)

    def _submitted(self, task_id: str) -> dict[str, Any] | None:
        from jobs import deliveries

        try:
            name = deliveries.submitted_name(self.settings, task_id)
        except Exception as exc:
            raise ServiceUnavailableError(f"task result backend unavailable: {type(exc).__name__}") from exc
        return None if name is None else {"task_id": task_id, "name": name, "status": "queued"}

    def pending(self) -> int | None:
        return self._inline.pending() if self._inline is not None else None

    def _need_inline(self) -> InlineExecutor:
        if self._inline is None:
            problems = "; ".join(f"{k}: {v}" for k, v in self._problems.items()) or "not started"
            raise ServiceUnavailableError(f"inline task executor unavailable ({problems})")
        return self._inline


def _as_dict(state: TaskState) -> dict[str, Any]:
    out: dict[str, Any] = {"task_id": state.task_id, "name": state.name, "status": state.status}
    if state.result is not None:
        out["result"] = state.result
    if state.error is not None:
        out["error"] = state.error
    if state.retries:
        out["retries"] = state.retries
    return out
