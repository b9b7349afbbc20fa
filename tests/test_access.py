"""The API key on writes (and on reads when asked), and CORS, through the real app over the ingested store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from niteru.settings import Settings
from tests.store_fixtures import Ingested

pytestmark = [pytest.mark.weights, pytest.mark.catalog, pytest.mark.slow]
KEY = "k3y-for-tests-0123456789"


def client_with(ingested: Ingested, **changes: object) -> TestClient:
    settings: Settings = ingested.settings.model_copy(update=changes)
    return TestClient(create_app(settings, embedders=ingested.embedders))


@pytest.fixture
def keyed(ingested: Ingested) -> Iterator[TestClient]:
    with client_with(ingested, api_key=SecretStr(KEY)) as c:
        yield c


def unauthorized(r: object) -> None:
    assert r.status_code == 401, r.text  # type: ignore[attr-defined]
    assert set(r.json()) == {"detail"} and "API key" in r.json()["detail"]  # type: ignore[attr-defined]
    assert r.headers["www-authenticate"].startswith("Bearer")  # type: ignore[attr-defined]


def test_a_write_without_the_key_gets_401_and_changes_nothing(keyed: TestClient, ingested: Ingested) -> None:
    row = ingested.good[2]
    url = f"/v1/products/{row.product_id}"
    stored = keyed.get(url).json()
    renamed = {"shop_id": row.shop_id, "title": "Renamed by a stranger", "category": row.category}
    photo = (ingested.catalog / ingested.good[3].image).read_bytes()
    new = renamed | {"image_path": row.image}
    unauthorized(keyed.put(url, json=renamed))
    unauthorized(keyed.put(url, json=renamed, headers={"X-API-Key": "wrong"}))
    unauthorized(keyed.put(url, json=renamed, headers={"Authorization": f"Bearer {KEY}x"}))
    unauthorized(keyed.put(url, json=renamed, headers={"Authorization": f"Basic {KEY}"}))
    unauthorized(keyed.put(f"{url}/image", files={"file": ("a.jpg", photo, "image/jpeg")}))
    unauthorized(keyed.delete(url))
    unauthorized(keyed.put("/v1/products/stranger-1", json=new))
    unauthorized(
        keyed.post("/v1/tasks", json={"name": "niteru.products.delete", "kwargs": {"product_id": row.product_id}})
    )
    assert keyed.get(url).json() == stored
    assert keyed.get("/v1/products/stranger-1").status_code == 404
    # reads stay open
    assert keyed.get(f"{url}/similar", params={"k": 3}).status_code == 200
    assert keyed.post("/v1/search/text", json={"text": row.title, "k": 3}).status_code == 200


def test_the_key_opens_writes_by_either_header(keyed: TestClient, ingested: Ingested) -> None:
    row = ingested.good[4]
    body = {"shop_id": "s", "title": row.title, "category": row.category, "image_path": row.image}
    assert keyed.put("/v1/products/keyed-1", json=body, headers={"X-API-Key": KEY}).status_code == 201
    assert keyed.get("/v1/products/keyed-1").json()["title"] == row.title
    assert keyed.delete("/v1/products/keyed-1", headers={"Authorization": f"Bearer {KEY}"}).status_code == 204
    assert keyed.get("/v1/products/keyed-1").status_code == 404


def test_reads_closed_by_the_setting(ingested: Ingested) -> None:
    row = ingested.good[0]
    with client_with(ingested, api_key=SecretStr(KEY), api_reads_require_key=True) as c:
        unauthorized(c.get(f"/v1/products/{row.product_id}"))
        unauthorized(c.get(f"/v1/products/{row.product_id}/image"))
        unauthorized(c.get("/v1/products"))
        unauthorized(c.post("/v1/search/text", json={"text": row.title}))
        unauthorized(c.post("/v1/categorize", data={"text": row.title}))
        assert c.get(f"/v1/products/{row.product_id}", headers={"X-API-Key": KEY}).status_code == 200
        # probes, metrics and the page's own files stay open
        for path in ("/healthz", "/metrics", "/", "/static/app.js"):
            assert c.get(path).status_code == 200, path


def test_no_key_configured_leaves_writes_open_with_a_warning(
    ingested: Ingested, caplog: pytest.LogCaptureFixture
) -> None:
    row = ingested.good[5]
    body = {"shop_id": "s", "title": row.title, "category": row.category, "image_path": row.image}
    with caplog.at_level("WARNING", logger="api.security"), client_with(ingested) as c:
        assert c.put("/v1/products/open-1", json=body).status_code == 201
        assert c.delete("/v1/products/open-1").status_code == 204
    assert any("NITERU_API_KEY is not set" in r.message for r in caplog.records)


def test_cors_only_for_the_configured_origins(ingested: Ingested) -> None:
    preflight = {"Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "x-api-key"}
    with client_with(ingested, cors_origins=["https://shop.example"]) as c:
        ok = c.options("/v1/products/x", headers={"Origin": "https://shop.example", **preflight})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://shop.example"
        assert "access-control-allow-credentials" not in ok.headers
        refused = c.options("/v1/products/x", headers={"Origin": "https://evil.example", **preflight})
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
        simple = c.get("/healthz", headers={"Origin": "https://shop.example"})
        assert simple.headers["access-control-allow-origin"] == "https://shop.example"
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    with client_with(ingested) as c:  # the default: no CORS at all
        assert (
            "access-control-allow-origin" not in c.get("/healthz", headers={"Origin": "https://shop.example"}).headers
        )
