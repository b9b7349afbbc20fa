"""Health, readiness, metrics, the web page and ``/v1/tasks`` (inline executor) through the real app on
both store engines, with the fake embedders (fast tier)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from niteru.settings import Settings
from tests.fakes import fake_embedders
from tests.fast_fixtures import FastApi, photo

KEY = "k3y-for-fast-tests-0123456789"

pytestmark = pytest.mark.catalog  # real catalog-dev rows, read in place


def submit(api: FastApi, name: str, **kwargs: Any) -> str:
    r = api.client.post("/v1/tasks", json={"name": name, "kwargs": kwargs})
    assert r.status_code == 202, r.text
    task_id: str = r.json()["task_id"]
    assert r.headers["location"] == f"/v1/tasks/{task_id}"
    return task_id


def test_health_ready_and_openapi(fast_api: FastApi) -> None:
    client = fast_api.client
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and set(body["checks"].values()) == {"ok"}
    assert body["store"]["points"] >= len(fast_api.rows)
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/v1/products/{product_id}/similar", "/v1/search/text", "/v1/categorize", "/v1/tasks"} <= paths


def test_metrics_count_requests_and_survive_a_missing_broker(fast_api: FastApi) -> None:
    client = fast_api.client
    client.get("/healthz")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "niteru_http_request_duration_seconds_count" in text
    assert "niteru_store_query_duration_seconds" in text and "niteru_embedding_duration_seconds" in text
    # the broker of these tests is not there: the queue length is NaN, the scrape still answers
    queue = [line for line in text.splitlines() if line.startswith("niteru_queue_length{")]
    assert queue and queue[0].endswith("NaN"), queue


def test_the_web_page_and_its_assets(fast_api: FastApi) -> None:
    client = fast_api.client
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>niteru" in page.text and "/static/app.js" in page.text
    for asset, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200 and kind in r.headers["content-type"], asset


def test_tasks_upsert_image_and_delete_run_inline(fast_api: FastApi) -> None:
    src = fast_api.rows[2]
    fields = {"shop_id": "shop-i", "title": "Inline task product", "category": src.category}
    upsert = fast_api.wait_task(
        submit(fast_api, "niteru.products.upsert", product_id="inline-1", fields=fields, image=src.image)
    )
    assert upsert["status"] == "succeeded" and upsert["result"]["status"] == "needs_image", upsert
    image = fast_api.wait_task(upsert["result"]["image_task"])
    assert image["status"] == "succeeded" and image["result"]["status"] == "created", image
    assert fast_api.client.get("/v1/products/inline-1").json()["title"] == "Inline task product"
    top = fast_api.client.get("/v1/products/inline-1/similar", params={"k": 1, "mode": "image"}).json()
    assert top["items"][0]["product_id"] == src.product_id  # the same photo

    batch = fast_api.wait_task(
        submit(
            fast_api,
            "niteru.images.registered_many",
            items=[
                {"product_id": "inline-2", "image": fast_api.rows[3].image, "fields": fields},
                {"product_id": "inline-3", "image": "images/no-such-file.jpg", "fields": fields},
            ],
        )
    )
    assert [i["status"] for i in batch["result"]["items"]] == ["created", "failed"], batch
    assert batch["result"]["items"][1]["reason"] == "not_found"

    gone = fast_api.wait_task(submit(fast_api, "niteru.products.delete", product_id="inline-1"))
    assert gone["status"] == "succeeded" and gone["result"]["status"] == "deleted"
    assert fast_api.client.get("/v1/products/inline-1").status_code == 404


def test_bad_task_calls_are_refused_before_queueing(fast_api: FastApi) -> None:
    client = fast_api.client
    unknown = client.post("/v1/tasks", json={"name": "niteru.nope", "kwargs": {}})
    assert unknown.status_code == 422 and "unknown task" in unknown.json()["detail"]
    missing = client.post("/v1/tasks", json={"name": "niteru.products.delete", "kwargs": {}})
    assert missing.status_code == 422 and "product_id" in missing.json()["detail"]
    assert client.get("/v1/tasks/no-such-task").status_code == 404


def test_the_api_key_guards_writes_and_on_request_reads(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_key=SecretStr(KEY), api_reads_require_key=True)
    fields = json.dumps({"shop_id": "s", "title": "Keyed lamp", "category": "home"})
    upload = {"files": {"file": ("a.png", photo((9, 99, 199)), "image/png")}, "data": {"product": fields}}
    with TestClient(create_app(settings, embedders=fake_embedders(settings))) as client:
        refused = client.put("/v1/products/keyed/image", **upload)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/v1/products/keyed", headers={"X-API-Key": KEY}).status_code == 404  # nothing written
        wrong = client.put("/v1/products/keyed/image", headers={"X-API-Key": "nope"}, **upload)
        assert wrong.status_code == 401
        ok = client.put("/v1/products/keyed/image", headers={"Authorization": f"Bearer {KEY}"}, **upload)
        assert ok.status_code == 201, ok.text
        assert client.get("/v1/products/keyed").status_code == 401  # reads need the key too, as configured
        assert client.get("/v1/products/keyed", headers={"X-API-Key": KEY}).json()["title"] == "Keyed lamp"
        # the probes, the metrics and the page stay open
        assert [client.get(p).status_code for p in ("/healthz", "/metrics", "/")] == [200, 200, 200]
