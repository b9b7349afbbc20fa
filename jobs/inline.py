"""The task executor of the embedded deployment: the same task handlers, in a thread of the API process.

The embedded store admits one process, and the API is that process, so a Celery worker could never open
it. ``POST /v1/tasks`` then queues the task here: one thread runs tasks in the order they are due (the
store and the models are shared with the request handlers), transient failures come back after an
exponential, jittered, capped delay, exactly like the Celery decorator's policy, and follow-ups (an
upsert's image task) join the queue. The daily rebuild is scheduled here too, from the same cron setting
beat uses.

A 202 means the task will run: it is in the journal on disk (``jobs.journal``) before ``submit``
returns, and an executor started on the same data folder after a crash runs every task that had not
finished (a task cut off mid-run runs again; tasks are idempotent), with its retry count and due time.
States of tasks still to run are never dropped; finished ones are kept up to ``KEEP_RESULTS``, oldest
dropped first. The queue is bounded (``jobs_inline_queue_max``): past it ``submit`` raises
``QueueFullError`` and the API answers 503 with Retry-After.
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
from pathlib import Path
from typing import Any

from jobs import registry
from jobs.context import JobContext
from jobs.journal import FINISHED, TaskJournal
from niteru.refusals import Refusal
from niteru.settings import Settings

log = logging.getLogger(__name__)
KEEP_RESULTS = 10_000


class QueueFullError(RuntimeError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the task queue is full ({limit} tasks waiting, NITERU_JOBS_INLINE_QUEUE_MAX); retry later")
        self.limit = limit


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
    due: float  # wall-clock seconds: a due time read back from the journal means the same after a restart
    seq: int
    task_id: str = field(compare=False)
    kwargs: dict[str, Any] = field(compare=False)
    # The submitter's context (its request id, for the task's log lines), as Celery headers carry it.
    context: contextvars.Context = field(compare=False, default_factory=contextvars.copy_context)


def journal_path(settings: Settings) -> Path:
    return settings.data_dir / "tasks" / "inline.sqlite3"


class InlineExecutor:
    def __init__(self, settings: Settings, context: Callable[[], JobContext]) -> None:
        self.settings = settings
        self._context = context
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._states: OrderedDict[str, TaskState] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()  # finished task ids, oldest first
        self._finishes = 0
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._schedule = RebuildSchedule(settings)
        self._journal = TaskJournal(journal_path(settings))
        self._resume()

    def _resume(self) -> None:
        """What the journal holds from before: finished states to answer for, unfinished tasks to run."""
        for row in self._journal.finished(KEEP_RESULTS):
            self._states[row.task_id] = TaskState(row.task_id, row.name, row.status, row.result, row.error, row.retries)
            self._finished[row.task_id] = None
        resumed = self._journal.unfinished()
        for row in resumed:
            status = "retrying" if row.retries else "queued"
            self._states[row.task_id] = TaskState(row.task_id, row.name, status, row.result, row.error, row.retries)
            heapq.heappush(self._heap, _Entry(row.due, next(self._seq), row.task_id, row.kwargs))
        if resumed:
            log.info("inline executor resumes %d accepted tasks from %s", len(resumed), self._journal.path)

    def start(self) -> InlineExecutor:
        self._thread = threading.Thread(target=self._loop, name="niteru-inline-tasks", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the running task (not the queue: it stays in the journal for the next start) and stop."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # a long task (a rebuild) still runs: it will journal its end
                return
        with self._cv:
            self._journal.close()

    def submit(self, name: str, kwargs: dict[str, Any], *, bounded: bool = True) -> TaskState:
        """Queue a task, on disk before this returns. ``bounded``: refuse when the queue is full (a new
        task from a client); follow-ups of accepted tasks are never refused."""
        if name not in registry.TASKS:
            raise registry.UnknownTaskError(name)
        with self._cv:
            if bounded and len(self._heap) >= self.settings.jobs_inline_queue_max:
                raise QueueFullError(self.settings.jobs_inline_queue_max)
            state = self._new_state(name, kwargs, due := time.time())
            heapq.heappush(self._heap, _Entry(due, next(self._seq), state.task_id, kwargs))
            self._cv.notify()
        return state

    def _new_state(self, name: str, kwargs: dict[str, Any], due: float) -> TaskState:
        """A queued task's state, journalled and kept for ``state()``. Holds ``_cv``."""
        state = TaskState(str(uuid.uuid4()), name, "queued")
        self._journal.add(state.task_id, name, kwargs, due)
        self._states[state.task_id] = state
        return state

    def _save(self, state: TaskState, due: float | None = None) -> None:
        """Journal a state change; a finished task's state joins the kept results (oldest dropped)."""
        with self._cv:
            self._journal.update(
                state.task_id, state.status, result=state.result, error=state.error, retries=state.retries, due=due
            )
            if state.status not in FINISHED:
                return
            self._finished[state.task_id] = None
            while len(self._finished) > KEEP_RESULTS:
                old, _ = self._finished.popitem(last=False)
                self._states.pop(old, None)
            self._finishes += 1
            if self._finishes % 100 == 0:  # a DELETE now and then, not one per task
                self._journal.prune(KEEP_RESULTS)

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
                    state = self._new_state(registry.REBUILD, {}, time.time())
                    return _Entry(0.0, next(self._seq), state.task_id, {})
                wait = 60.0
                if self._heap:
                    wait = self._heap[0].due - time.time()
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
                self._save(state)
                return
            state.retries += 1
            # The Celery decorator's policy: 2**n seconds, capped, full jitter.
            delay = random.uniform(0, min(self.settings.jobs_retry_backoff_max, 2**state.retries))
            state.status, state.error = "retrying", str(exc)
            due = time.time() + delay
            self._save(state, due)
            with self._cv:
                heapq.heappush(self._heap, _Entry(due, next(self._seq), state.task_id, entry.kwargs, entry.context))
            return
        except Exception as exc:  # a bug: the task fails, the executor goes on
            log.exception("inline task %s %s failed", state.name, state.task_id)
            state.status, state.error = "failed", f"{type(exc).__name__}: {exc}"
            self._save(state)
            return
        # Follow-ups are journalled before this task is marked done: a crash between the two runs this
        # task again (idempotent), never loses its follow-up.
        for name, kwargs in outcome.follow_ups:
            registry.note_follow_up(state.name, outcome.result, self.submit(name, kwargs, bounded=False).task_id)
        state.result = outcome.result
        state.status = "failed" if outcome.result.get("status") == "failed" else "succeeded"
        self._save(state)


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
