"""The task executor of the embedded deployment: the same task handlers, in a thread of the API process.

The embedded store admits one process, and the API is that process, so a Celery worker could never open
it. ``POST /v1/tasks`` then queues the task here: one thread runs tasks in arrival order (the store and
the models are shared with the request handlers), transient failures come back after an exponential,
jittered, capped delay, exactly like the Celery decorator's policy, and follow-ups (an upsert's image
task) join the queue. The daily rebuild is scheduled here too, from the same cron setting beat uses.

What this does not give: durability. A task queued here and not yet run is lost if the process dies;
a shop that cannot re-send after a restart should run Redis, a Qdrant server and Celery workers.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobs import registry
from jobs.context import JobContext
from niteru.refusals import Refusal
from niteru.settings import Settings

log = logging.getLogger(__name__)
KEEP_RESULTS = 10_000


@dataclass
class TaskState:
    task_id: str
    name: str
    status: str  # queued, started, retrying, succeeded, failed
    result: dict[str, Any] | None = None
    error: str | None = None
    retries: int = 0


@dataclass(order=True)
class _Entry:
    due: float
    seq: int
    task_id: str = field(compare=False)
    kwargs: dict[str, Any] = field(compare=False)
    # The submitter's context (its request id, for the task's log lines), as Celery headers carry it.
    context: contextvars.Context = field(compare=False, default_factory=contextvars.copy_context)


class InlineExecutor:
    def __init__(self, settings: Settings, context: Callable[[], JobContext]) -> None:
        self.settings = settings
        self._context = context
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._states: OrderedDict[str, TaskState] = OrderedDict()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._schedule = RebuildSchedule(settings)

    def start(self) -> InlineExecutor:
        self._thread = threading.Thread(target=self._loop, name="niteru-inline-tasks", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the running task (not the queue) and stop."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, name: str, kwargs: dict[str, Any]) -> TaskState:
        if name not in registry.TASKS:
            raise registry.UnknownTaskError(name)
        with self._cv:
            state = self._new_state(name)
            heapq.heappush(self._heap, _Entry(time.monotonic(), next(self._seq), state.task_id, kwargs))
            self._cv.notify()
        return state

    def _new_state(self, name: str) -> TaskState:
        """A queued task's state, kept for ``state()``; the oldest go beyond KEEP_RESULTS. Holds ``_cv``."""
        state = TaskState(str(uuid.uuid4()), name, "queued")
        self._states[state.task_id] = state
        while len(self._states) > KEEP_RESULTS:
            self._states.popitem(last=False)
        return state

    def state(self, task_id: str) -> TaskState | None:
        with self._cv:
            return self._states.get(task_id)

    def pending(self) -> int:
        with self._cv:
            return len(self._heap)

    def _next(self) -> _Entry | None:
        with self._cv:
            while not self._stopping:
                if self._schedule.due():
                    return _Entry(0.0, next(self._seq), self._new_state(registry.REBUILD).task_id, {})
                wait = 60.0
                if self._heap:
                    wait = self._heap[0].due - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._heap)
                self._cv.wait(min(wait, 60.0))  # wakes at least once a minute for the schedule
            return None

    def _loop(self) -> None:
        while (entry := self._next()) is not None:
            state = self._states.get(entry.task_id)
            if state is None:
                continue
            entry.context.run(self._run, state, entry)

    def _run(self, state: TaskState, entry: _Entry) -> None:
        state.status = "started"
        try:
            # The context provider (the API's services) brings the models up to the live collection first.
            outcome = registry.perform(self._context(), state.name, entry.kwargs, state.task_id)
        except Refusal as exc:  # only transient ones leave ``perform``
            if state.retries >= self.settings.jobs_max_retries:
                state.status, state.error = "failed", f"gave up after {state.retries} retries: {exc}"
                return
            state.retries += 1
            # The Celery decorator's policy: 2**n seconds, capped, full jitter.
            delay = random.uniform(0, min(self.settings.jobs_retry_backoff_max, 2**state.retries))
            state.status, state.error = "retrying", str(exc)
            with self._cv:
                due = time.monotonic() + delay
                heapq.heappush(self._heap, _Entry(due, next(self._seq), state.task_id, entry.kwargs, entry.context))
            return
        except Exception as exc:  # a bug: the task fails, the executor goes on
            log.exception("inline task %s %s failed", state.name, state.task_id)
            state.status, state.error = "failed", f"{type(exc).__name__}: {exc}"
            return
        state.result = outcome.result
        state.status = "failed" if outcome.result.get("status") == "failed" else "succeeded"
        for name, kwargs in outcome.follow_ups:
            registry.note_follow_up(state.name, outcome.result, self.submit(name, kwargs).task_id)


class RebuildSchedule:
    """The cron of ``rebuild_cron`` without beat: due once per matching minute, never for missed ones
    (a process that was down at 03:30 does not rebuild when it comes back at 09:00)."""

    def __init__(self, settings: Settings) -> None:
        from jobs.schedule import rebuild_crontab

        self._cron = rebuild_crontab(settings)
        self._next = self._following(time.time())

    def _following(self, after: float) -> float:
        """The first matching minute after ``after`` (epoch seconds); infinity when switched off."""
        if self._cron is None:
            return float("inf")
        now = self._cron.now()
        # remaining_estimate(t): from now to the first matching minute after t.
        wait = self._cron.remaining_estimate(datetime.fromtimestamp(after, now.tzinfo)).total_seconds()
        return 1.0 + float(now.timestamp()) + float(wait)

    def due(self) -> bool:
        now = time.time()
        if now < self._next:
            return False
        self._next = self._following(now + 60.0)
        return True
