"""Operations: /metrics after real requests, request ids in headers and log lines, body and k limits,
the product listing and image endpoints. The API key and CORS: tests/test_access.py.
"""

from __future__ import annotations

import io
import json
import logging
import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.errors import ApiError
from api.images import stored_image
from niteru.logs import JsonFormatter, RequestIdFilter
from niteru.products import Product
from niteru.settings import Settings
from tests.live_server import serve
from tests.store_fixtures import Ingested

pytestmark = [pytest.mark.weights, pytest.mark.catalog, pytest.mark.slow]
REDIS_DB13 = "redis://127.0.0.1:6379/13"
SIMILAR = "/v1/products/{product_id}/similar"


@pytest.fixture(scope="module")
def client(ingested: Ingested) -> Iterator[TestClient]:
    with TestClient(create_app(ingested.settings, embedders=ingested.embedders)) as c:
        yield c


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def test_metrics_appear_after_requests(client: TestClient, ingested: Ingested) -> None:
    row = next(r for r in ingested.good if r.category == "fashion")
    before = samples(client)
    assert client.get(f"/v1/products/{row.product_id}/similar", params={"mode": "text", "k": 3}).status_code == 200
    assert client.get(f"/v1/products/{row.product_id}/similar", params={"k": 3}).status_code == 200
    assert client.post("/v1/search/text", json={"text": row.title, "k": 3}).status_code == 200
    assert client.get("/v1/products/not-there").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    after = samples(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    req = "niteru_http_request_duration_seconds_count"
    assert grew(req, route=SIMILAR, mode="text", method="GET", status="200") == 1
    assert grew(req, route=SIMILAR, mode="auto", method="GET", status="200") == 1
    assert grew(req, route="/v1/search/text", mode="text", method="POST", status="200") == 1
    assert grew(req, route="/v1/products/{product_id}", mode="-", method="GET", status="404") == 1
    assert grew(req, route="<unmatched>", mode="-", method="GET", status="404") == 1
    assert grew("niteru_embedding_duration_seconds_count", model="text") == 1
    assert grew("niteru_store_query_duration_seconds_count", operation="similar") == 2
    assert grew("niteru_store_query_duration_seconds_count", operation="search") == 1
    # route templates, never raw paths: no product id becomes a label
    text = client.get("/metrics").text
    assert row.product_id not in text and "not-there" not in text and "/no/such/page" not in text


def test_queue_length_is_read_from_the_broker_or_nan(ingested: Ingested) -> None:
    import redis

    queue = f"niteru-metrics-{uuid.uuid4().hex[:8]}"
    try:
        r = redis.Redis.from_url(REDIS_DB13, socket_timeout=2)
        r.rpush(queue, "a", "b", "c")
    except redis.RedisError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    try:
        up = ingested.settings.model_copy(update={"celery_broker_url": REDIS_DB13, "celery_queue": queue})
        with TestClient(create_app(up, embedders=ingested.embedders)) as c:
            assert value(samples(c), "niteru_queue_length", queue=queue) == 3
    finally:
        r.delete(queue)
    # nothing listens on port 1: NaN, and the scrape still answers 200 at once
    down = ingested.settings.model_copy(update={"celery_broker_url": "redis://127.0.0.1:1/0", "celery_queue": queue})
    with TestClient(create_app(down, embedders=ingested.embedders)) as c:
        assert math.isnan(value(samples(c), "niteru_queue_length", queue=queue))


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "shop-42.abc_DEF:1"})
    assert given.headers["x-request-id"] == "shop-42.abc_DEF:1"
    for bad in ("x" * 65, "has space", "<script>", "a;b", "\xe9"):
        made = client.get("/healthz", headers={"X-Request-ID": bad.encode("latin-1")}).headers["x-request-id"]
        assert made != bad and len(made) == 32 and int(made, 16) >= 0
    first, second = (client.get("/healthz").headers["x-request-id"] for _ in range(2))
    assert first != second
    # the id is on error answers too, including the 413 answered before the app runs
    too_big = client.post("/v1/search/text", content=b"{}", headers={"content-length": str(10**9)})
    assert too_big.status_code == 413 and len(too_big.headers["x-request-id"]) == 32


def test_log_lines_are_json_with_the_request_id(ingested: Ingested, tmp_path: Path) -> None:
    """Through real uvicorn: its access line carries the request id the response returned."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("uvicorn.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    # a store of its own: the module's client holds the ingested one
    settings = ingested.settings.model_copy(update={"data_dir": tmp_path, "store_dir": tmp_path / "store"})
    try:
        with serve(create_app(settings, embedders=ingested.embedders), log_level="info") as url:
            answer = httpx.get(f"{url}/healthz", headers={"X-Request-ID": "req-from-shop-7"})
            made = httpx.get(f"{url}/healthz").headers["x-request-id"]
    finally:
        access.removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert answer.headers["x-request-id"] == "req-from-shop-7"
    by_id = {line["request_id"]: line for line in lines}
    assert {"req-from-shop-7", made} <= set(by_id)
    line = by_id["req-from-shop-7"]
    assert set(line) >= {"time", "level", "logger", "message", "request_id"}
    assert line["logger"] == "uvicorn.access" and "GET /healthz" in line["message"] and line["level"] == "INFO"


def _multipart_stream() -> Iterator[bytes]:
    yield b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    for _ in range(12):
        yield b"\0" * 1024 * 1024
    yield b"\r\n--xx--\r\n"


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("PUT", "/v1/products/p1", "application/json"),
        ("PUT", "/v1/products/p1/image", "multipart/form-data; boundary=xx"),
        ("POST", "/v1/search/image", "multipart/form-data; boundary=xx"),
        ("POST", "/v1/search/text", "application/json"),
        ("POST", "/v1/categorize", "multipart/form-data; boundary=xx"),
    ],
)
def test_every_body_endpoint_refuses_an_oversize_body(client: TestClient, method: str, path: str, kind: str) -> None:
    declared = client.request(method, path, content=b"{}", headers={"content-length": str(10**9)})
    assert declared.status_code == 413 and set(declared.json()) == {"detail"}
    # no length declared (chunked): cut off once past the cap, still as JSON
    chunks = _multipart_stream() if kind.startswith("multipart") else (b" " * 1024 * 1024 for _ in range(12))
    streamed = client.request(method, path, content=chunks, headers={"content-type": kind})
    assert streamed.status_code == 413 and set(streamed.json()) == {"detail"}, streamed.text


def test_k_over_the_limit_is_refused_everywhere(client: TestClient, ingested: Ingested) -> None:
    over = ingested.settings.api_max_k + 1
    row = ingested.good[0]
    photo = (ingested.catalog / row.image).read_bytes()
    answers = [
        client.get(f"/v1/products/{row.product_id}/similar", params={"k": over}),
        client.post("/v1/search/text", json={"text": row.title, "k": over}),
        client.post("/v1/search/image", params={"k": over}, files={"file": ("a.jpg", photo, "image/jpeg")}),
        client.get("/v1/products", params={"limit": over}),
    ]
    for r in answers:
        assert r.status_code == 422 and str(ingested.settings.api_max_k) in r.json()["detail"], r.text


def test_listing_by_category(client: TestClient, ingested: Ingested) -> None:
    everything = client.get("/v1/products", params={"limit": 100}).json()
    ids = {item["product_id"] for item in everything["items"]}
    assert {r.product_id for r in ingested.good} <= ids and everything["total"] == len(ids)
    assert sum(everything["categories"].values()) == everything["total"]
    food = client.get("/v1/products", params={"category": "food", "limit": 3, "offset": 1}).json()
    assert food["total"] == everything["categories"]["food"] and len(food["items"]) == 3
    assert {item["category"] for item in food["items"]} == {"food"}
    # pages follow one stable order
    whole = client.get("/v1/products", params={"category": "food", "limit": 100}).json()["items"]
    assert [i["product_id"] for i in whole[1:4]] == [i["product_id"] for i in food["items"]]


def test_product_image_endpoint(client: TestClient, ingested: Ingested, image_server: str) -> None:
    row = ingested.good[3]
    r = client.get(f"/v1/products/{row.product_id}/image")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == (ingested.catalog / row.image).read_bytes()
    assert client.get("/v1/products/not-there/image").status_code == 404
    url = f"{image_server}/{row.image}"
    body = {"shop_id": "s", "title": row.title, "category": row.category, "image_url": url}
    assert client.put("/v1/products/img-url-1", json=body).status_code == 201
    moved = client.get("/v1/products/img-url-1/image", follow_redirects=False)
    assert moved.status_code == 307 and moved.headers["location"] == url
    client.delete("/v1/products/img-url-1")


@pytest.mark.parametrize(
    "image", ["../../../etc/passwd", "/etc/passwd", "products.csv", "upload:abc", "images/nope.jpg"]
)
def test_only_image_files_inside_the_catalog_are_served(ingested: Ingested, image: str) -> None:
    product = Product.model_validate(
        {
            "product_id": "p",
            "shop_id": "s",
            "title": "t",
            "image": image,
            "image_sha256": "",
            "image_version": 1,
            "image_model_version": "",
            "text_model_version": "",
            "content_hash": "",
            "updated_at": "2025-01-01T00:00:00Z",
        }
    )
    with pytest.raises(ApiError) as refused:
        stored_image(product, ingested.settings)
    assert refused.value.status == 404


def test_settings_refuse_unsafe_access_combinations() -> None:
    with pytest.raises(ValueError, match="cors_origins"):
        Settings(cors_origins=["*"], cors_allow_credentials=True)
    with pytest.raises(ValueError, match="api_key"):
        Settings(api_reads_require_key=True)
    with pytest.raises(ValueError, match="api_key is empty"):
        Settings(api_key=" ")
    assert Settings(cors_origins=["*"]).cors_allow_credentials is False
