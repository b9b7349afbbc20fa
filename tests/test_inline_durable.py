"""The inline executor keeps what it accepted: tasks on disk before the 202, resumed by a new executor on
the same data folder, a bounded queue (503 with Retry-After), versions stamped at submission. Real store
(Edge) and the real executor; fake embedders (fast tier)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from jobs import inline, registry
from jobs.context import JobContext
from jobs.inline import InlineExecutor, QueueFullError
from niteru.catalog import CatalogRow
from niteru.settings import Settings
from niteru.store import open_store
from tests.fakes import fake_embedders
from tests.fast_fixtures import row_body, wait_state

pytestmark = pytest.mark.catalog  # real catalog-dev rows, read in place


def settings_for(tmp_path: Path, catalog_dir: Path, **extra: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        catalog_dir=catalog_dir,
        store_engine="edge",
        celery_broker_url="redis://127.0.0.1:1/0",
        metrics_broker_timeout=0.2,
        **extra,
    )


def image_task(row: CatalogRow, pid: str) -> dict[str, Any]:
    fields = {k: v for k, v in row_body(row).items() if k != "image_path" and v is not None}
    return {"product_id": pid, "image": row.image, "fields": fields}


def task_state(client: TestClient, task_id: str) -> dict[str, Any]:
    state: dict[str, Any] = client.get(f"/v1/tasks/{task_id}").json()
    return state


class Blocker:
    """A stand-in handler for ``niteru.products.delete`` that holds the executor's thread until released:
    what is submitted meanwhile waits in the queue, deterministically."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, _ctx: JobContext, args: registry.DeleteArgs, _id: str) -> registry.Outcome:
        self.started.set()
        assert self.release.wait(60)
        return registry.Outcome({"product_id": args.product_id, "status": "absent"})


@pytest.fixture
def blocker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Blocker]:
    held = Blocker()
    monkeypatch.setitem(registry.TASKS, registry.DELETE, registry.TaskSpec(registry.DeleteArgs, held))
    yield held
    held.release.set()


def test_accepted_tasks_survive_a_restart_of_the_executor(tmp_path: Path, catalog_dir: Path) -> None:
    from niteru.catalog import read_catalog

    rows = read_catalog(catalog_dir)[:3]
    settings = settings_for(tmp_path, catalog_dir)
    first = InlineExecutor(settings, lambda: pytest.fail("the stopped executor ran a task"))
    accepted = [
        first.submit(registry.IMAGE, registry.stamp(registry.IMAGE, image_task(r, f"d-{i}")))
        for i, r in enumerate(rows)
    ]
    accepted.append(first.submit(registry.DELETE, {"product_id": "d-0", "version": 1}))
    first.stop()  # the process goes away before running anything

    embedders = fake_embedders(settings)
    store = open_store(settings)
    store.ensure_collection(embedders.dims)
    ctx = JobContext(settings, embedders, store)
    second = InlineExecutor(settings, lambda: ctx)
    try:
        assert [second.state(s.task_id).status for s in accepted] == ["queued"] * 4  # type: ignore[union-attr]
        second.start()
        done = [wait_state(functools.partial(second.state, s.task_id), {"succeeded", "failed"}) for s in accepted]
        assert [d.result["status"] for d in done[:3]] == ["created"] * 3, done
        assert done[3].status == "succeeded"
    finally:
        second.stop()
    # the finished states are journalled too: a third executor still answers for them
    third = InlineExecutor(settings, lambda: ctx)
    assert third.state(accepted[0].task_id).status == "succeeded"  # type: ignore[union-attr]
    third.stop()
    assert store.get("d-1") is not None and store.get("d-2") is not None
    store.close()


def test_queued_states_are_never_evicted_and_the_queue_is_bounded(
    tmp_path: Path, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inline, "KEEP_RESULTS", 2)
    executor = InlineExecutor(settings_for(tmp_path, catalog_dir, jobs_inline_queue_max=5), lambda: pytest.fail())
    try:
        queued = [executor.submit(registry.DELETE, {"product_id": f"p{i}"}) for i in range(5)]
        assert all(executor.state(s.task_id) is not None for s in queued)  # more than KEEP_RESULTS, all known
        with pytest.raises(QueueFullError, match="NITERU_JOBS_INLINE_QUEUE_MAX"):
            executor.submit(registry.DELETE, {"product_id": "one-too-many"})
    finally:
        executor.stop()


def test_a_full_queue_answers_503_with_retry_after(tmp_path: Path, catalog_dir: Path, blocker: Blocker) -> None:
    settings = settings_for(tmp_path, catalog_dir, jobs_inline_queue_max=1)
    with TestClient(create_app(settings, embedders=fake_embedders(settings))) as client:
        post = {"name": registry.DELETE, "kwargs": {"product_id": "held"}}
        running = client.post("/v1/tasks", json=post).json()["task_id"]
        assert blocker.started.wait(30)  # the executor's thread is inside the first task
        waiting = client.post("/v1/tasks", json=post)
        assert waiting.status_code == 202
        full = client.post("/v1/tasks", json=post)
        assert full.status_code == 503 and full.headers["retry-after"].isdigit(), full.text
        assert "NITERU_JOBS_INLINE_QUEUE_MAX" in full.json()["detail"]
        documented = client.get("/openapi.json").json()["paths"]["/v1/tasks"]["post"]["responses"]["503"]
        assert "Retry-After" in documented["headers"]
        blocker.release.set()
        for task_id in (running, waiting.json()["task_id"]):
            wait_state(functools.partial(task_state, client, task_id), {"succeeded"})


def test_an_image_task_is_ordered_by_when_it_was_submitted_not_when_it_ran(
    tmp_path: Path, catalog_dir: Path, blocker: Blocker
) -> None:
    from niteru.catalog import read_catalog

    older, newer, first = read_catalog(catalog_dir)[:3]
    settings = settings_for(tmp_path, catalog_dir)
    with TestClient(create_app(settings, embedders=fake_embedders(settings))) as client:
        assert client.put("/v1/products/o-1", json=row_body(first)).status_code == 201
        client.post("/v1/tasks", json={"name": registry.DELETE, "kwargs": {"product_id": "held"}})
        assert blocker.started.wait(30)
        # submitted first, without a version: it waits behind the held task...
        task = client.post("/v1/tasks", json={"name": registry.IMAGE, "kwargs": image_task(older, "o-1")})
        assert task.status_code == 202
        # ...while the shop stores a newer image directly
        put = client.put("/v1/products/o-1", json=row_body(newer))
        assert put.status_code == 200
        blocker.release.set()
        done = wait_state(functools.partial(task_state, client, task.json()["task_id"]), {"succeeded", "failed"})
        assert done["result"]["status"] == "stale", done
        assert client.get("/v1/products/o-1").json()["image"] == newer.image


def test_a_retrying_task_keeps_its_retry_count_and_due_time_across_a_restart(
    tmp_path: Path, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from niteru.refusals import Refusal

    def flaky(_ctx: JobContext, _args: registry.DeleteArgs, _id: str) -> registry.Outcome:
        raise Refusal("store_unavailable", "the store is down", transient=True)

    settings = settings_for(tmp_path, catalog_dir, jobs_retry_backoff_max=600)
    monkeypatch.setitem(registry.TASKS, registry.DELETE, registry.TaskSpec(registry.DeleteArgs, flaky))
    monkeypatch.setattr("jobs.inline.random.uniform", lambda _lo, _hi: 3600.0)  # due in an hour: it waits
    # the handler above touches nothing: a context without models or store is enough
    bare = JobContext(settings, fake_embedders(settings), cast(Any, None))
    first = InlineExecutor(settings, lambda: bare).start()
    task = first.submit(registry.DELETE, {"product_id": "p1", "version": 1})
    wait_state(functools.partial(first.state, task.task_id), {"retrying"})
    first.stop()

    second = InlineExecutor(settings, lambda: bare)  # not started: nothing may run
    resumed = second.state(task.task_id)
    assert resumed is not None and (resumed.status, resumed.retries) == ("retrying", 1)
    assert second._heap[0].due > time.time() + 3000  # still due in about an hour, not at once
    second.stop()
