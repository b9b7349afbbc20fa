"""``/v1/tasks`` with the inline executor: the Celery task contract run inside the API process (the
embedded deployment, no Redis), on a copy of the ingested slice. Plus the schedule both executors use."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from jobs.failures import list_failures
from jobs.schedule import ScheduleError, beat_schedule, rebuild_crontab
from niteru.logs import request_id_var
from niteru.settings import Settings
from tests.fast_fixtures import wait_task_state
from tests.store_fixtures import Ingested

pytestmark = [pytest.mark.weights, pytest.mark.catalog, pytest.mark.slow]


@pytest.fixture(scope="module")
def settings(ingested: Ingested, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data = tmp_path_factory.mktemp("inline") / "data"
    shutil.copytree(ingested.settings.data_dir, data)
    # jobs_executor "auto" with the embedded store must pick inline; the broker URL points nowhere to
    # prove that nothing here needs Redis.
    return Settings(
        **{**ingested.settings.model_dump(), "data_dir": data, "celery_broker_url": "redis://127.0.0.1:1/0"}
    )


@pytest.fixture(scope="module")
def client(settings: Settings, ingested: Ingested) -> Iterator[TestClient]:
    with TestClient(create_app(settings, embedders=ingested.embedders)) as c:
        yield c


def wait(client: TestClient, task_id: str, timeout: float = 120) -> dict[str, Any]:
    return wait_task_state(client, task_id, timeout)


def submit(client: TestClient, name: str, request_id: str | None = None, **kwargs: Any) -> str:
    headers = {"X-Request-ID": request_id} if request_id else {}
    r = client.post("/v1/tasks", json={"name": name, "kwargs": kwargs}, headers=headers)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/tasks/{r.json()['task_id']}"
    task_id: str = r.json()["task_id"]
    return task_id


def test_upsert_then_its_image_task_then_delete_run_in_process(client: TestClient, ingested: Ingested) -> None:
    src = ingested.good[2]
    fields = {"shop_id": "shop-i", "title": src.title, "category": src.category}
    upsert = wait(
        client, submit(client, "niteru.products.upsert", product_id="inline-1", fields=fields, image=src.image)
    )
    assert upsert["status"] == "succeeded" and upsert["result"]["status"] == "needs_image"
    image = wait(client, upsert["result"]["image_task"])
    assert image["result"]["status"] == "created", image
    assert client.get("/v1/products/inline-1").json()["title"] == src.title
    similar = client.get("/v1/products/inline-1/similar?k=3&mode=image").json()
    assert similar["items"][0]["product_id"] == src.product_id  # the same photo is its nearest neighbour

    gone = wait(client, submit(client, "niteru.products.delete", product_id="inline-1"))
    assert gone["result"]["status"] == "deleted"
    assert client.get("/v1/products/inline-1").status_code == 404


class _StampRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.seen_request_id = request_id_var.get()
        return True


def test_a_batch_with_a_corrupt_image_stores_the_rest_and_records_the_failure(
    client: TestClient, ingested: Ingested, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobs.registry")
    caplog.handler.addFilter(_StampRequestId())
    a, b = ingested.good[3], ingested.good[4]
    items = [
        {"product_id": "batch-a", "image": a.image, "fields": {"shop_id": "s", "title": a.title}},
        {"product_id": "batch-b", "image": b.image, "fields": {"shop_id": "s", "title": b.title}},
        {"product_id": "batch-bad", "image": "images/bad-corrupt-image.jpg", "fields": {"shop_id": "s", "title": "x"}},
        # the same product twice: the higher image_version wins, the other is superseded, not run
        {"product_id": "batch-a", "image": b.image, "image_version": 1, "fields": {"shop_id": "s", "title": a.title}},
    ]
    done = wait(client, submit(client, "niteru.images.registered_many", request_id="batch-req-1", items=items))
    assert done["status"] == "succeeded", done
    statuses = [item["status"] for item in done["result"]["items"]]
    assert statuses == ["created", "created", "failed", "superseded"], done["result"]
    assert done["result"]["items"][2]["reason"] == "corrupt"
    assert client.get("/v1/products/batch-b").status_code == 200
    recorded = [f for f in list_failures(settings) if f.product_id == "batch-bad"]
    assert recorded and recorded[-1].task == "niteru.images.registered_many"
    assert recorded[-1].reason == "corrupt"
    # the request id travelled with the task into the executor thread, as Celery headers carry it
    batch_lines = [r for r in caplog.records if r.name == "jobs.registry"]
    assert batch_lines and all(getattr(r, "seen_request_id", None) == "batch-req-1" for r in batch_lines)


def test_bad_calls_are_refused_before_queueing(client: TestClient) -> None:
    unknown = client.post("/v1/tasks", json={"name": "niteru.nope", "kwargs": {}})
    assert unknown.status_code == 422 and "unknown task" in unknown.json()["detail"]
    missing = client.post("/v1/tasks", json={"name": "niteru.products.delete", "kwargs": {}})
    assert missing.status_code == 422 and "product_id" in missing.json()["detail"]
    extra = client.post("/v1/tasks", json={"name": "niteru.products.delete", "kwargs": {"product_id": "x", "y": 1}})
    assert extra.status_code == 422
    assert client.get("/v1/tasks/no-such-task").status_code == 404


def test_the_daily_schedule_and_its_expiry() -> None:
    settings = Settings(rebuild_cron="15 4 * * 1", rebuild_timezone="Asia/Tokyo", rebuild_expires=3600)
    entry = beat_schedule(settings)["niteru-daily-rebuild"]
    assert entry["task"] == "niteru.collection.rebuild" and entry["options"]["expires"] == 3600
    cron = rebuild_crontab(settings)
    assert cron is not None
    # from a Sunday noon in Tokyo, the next run is Monday 04:15 Tokyo time
    sunday = datetime(2026, 11, 22, 3, 0, tzinfo=UTC).astimezone(cron.now().tzinfo)  # 12:00 in Tokyo
    start, ffwd, _ = cron.remaining_delta(sunday)
    assert (start + ffwd - sunday).total_seconds() == (16 * 60 + 15) * 60
    assert beat_schedule(Settings(rebuild_cron="")) == {}
    with pytest.raises(ScheduleError, match="5 fields"):
        rebuild_crontab(Settings(rebuild_cron="every day"))
    with pytest.raises(ScheduleError):
        rebuild_crontab(Settings(rebuild_cron="61 * * * *"))
