"""``POST /v1/tasks`` behind one interface: Celery (Redis broker) or the inline executor.

A shop backend without Redis posts the same task names and keyword arguments it would give
``send_task``; with ``jobs_executor`` resolving to celery the API forwards them to the broker and reads
states from the result backend, so the HTTP contract does not change when a shop scales out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from api.errors import ServiceUnavailableError
from niteru.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

    from jobs.context import JobContext
    from jobs.inline import InlineExecutor, TaskState

log = logging.getLogger(__name__)
Executor = Literal["celery", "inline"]
# Celery's state names, in the words of the inline executor.
CELERY_STATES = {
    "PENDING": "queued",
    "STARTED": "started",
    "RETRY": "retrying",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
}


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
        if self._celery is not None:
            try:
                sent = self._celery.send_task(name, kwargs=kwargs, queue=self.settings.celery_queue)
            except Exception as exc:  # kombu raises OperationalError and friends; all mean "broker down"
                raise ServiceUnavailableError(f"task broker unavailable: {exc}") from exc
            return {"task_id": sent.id, "name": name, "status": "queued"}
        return _as_dict(self._need_inline().submit(name, kwargs))

    def state(self, task_id: str) -> dict[str, Any] | None:
        if self._celery is not None:
            result = self._celery.AsyncResult(task_id)
            try:
                status, value = result.state, result.result
            except Exception as exc:
                raise ServiceUnavailableError(f"task result backend unavailable: {exc}") from exc
            if status == "PENDING":
                return None  # Celery cannot tell "unknown" from "waiting"; say unknown, as the inline side does
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
