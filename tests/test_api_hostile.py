"""Hostile requests against the real app (fake embedders): every answer is JSON with a documented status,
ids are taken exactly as given, 503s name no server, the key is checked before a body is read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from niteru.settings import Settings
from niteru.store import StoreUnavailableError
from tests.fakes import fake_embedders
from tests.fast_fixtures import photo
from tests.test_fetch import redirect_to, serve

pytestmark = pytest.mark.catalog

SECRET = "qdrant.internal.example:6333"


def body(**extra: object) -> dict[str, object]:
    return {"shop_id": "s", "title": "Red cotton cushion", "category": "home"} | extra


def detail(r: Any, status: int) -> Any:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    payload = r.json()
    assert set(payload) == {"detail"}
    return payload["detail"]


@pytest.fixture(scope="module")
def settings(catalog_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("hostile"),
        catalog_dir=catalog_dir,
        image_fetch_allow_hosts=["127.0.0.1"],
        celery_broker_url="redis://127.0.0.1:1/0",
        metrics_broker_timeout=0.2,
    )


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, embedders=fake_embedders(settings)), raise_server_exceptions=False) as c:
        files = {"file": ("a.png", photo((200, 30, 30)), "image/png")}
        r = c.put("/v1/products/abc/image", files=files, data={"product": json.dumps(body())})
        assert r.status_code == 201, r.text
        yield c


@pytest.mark.parametrize("path", ["/v1/products/abc%20", "/v1/products/%20", "/v1/products/%20abc"])
def test_ids_with_whitespace_at_either_end_are_refused_and_overwrite_nothing(client: TestClient, path: str) -> None:
    files = {"file": ("a.png", photo((30, 30, 200)), "image/png")}
    detail(client.put(f"{path}/image", files=files, data={"product": json.dumps(body(title="Overwritten"))}), 422)
    assert client.get("/v1/products/abc").json()["title"] == "Red cotton cushion"


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (b'{"shop_id": "s", "title": "t", "price": 1e999}', "price"),
        (b'{"shop_id": "s", "title": "t", "price": NaN}', "price"),
        (b'{"shop_id": "s", "title": "t"', "body"),
        (b"\xff\xfe not json", "body"),
    ],
)
def test_extreme_numbers_and_malformed_json_are_a_json_422(client: TestClient, raw: bytes, what: str) -> None:
    r = client.put("/v1/products/x1", content=raw, headers={"content-type": "application/json"})
    assert what in json.dumps(detail(r, 422))


def test_a_malformed_multipart_body_is_a_json_422(client: TestClient) -> None:
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    detail(client.put("/v1/products/abc/image", content=b"--xyz\r\nbroken", headers=headers), 422)


def test_an_image_path_too_long_for_the_file_system_is_refused(client: TestClient) -> None:
    assert "not_found" in detail(client.put("/v1/products/x2", json=body(image_path="a" * 300 + ".jpg")), 422)


def test_a_redirect_to_port_99999_is_a_refusal(client: TestClient) -> None:
    with serve(redirect_to("http://127.0.0.1:99999/a.png")) as port:
        r = client.put("/v1/products/x3", json=body(image_url=f"http://127.0.0.1:{port}/a.png"))
    assert "unsafe_url" in detail(r, 422)


def test_a_bad_field_names_the_core_reason_code(client: TestClient) -> None:
    errors = detail(client.put("/v1/products/x4", json=body(title="   ", price=-1, image_path="x.jpg")), 422)
    assert {e["loc"][-1]: e["reason"] for e in errors} == {"title": "empty_title", "price": "invalid_price"}


def test_the_unexpected_is_a_logged_json_500_with_the_request_id(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = client.app.state.services.store  # type: ignore[attr-defined]

    def broken(*args: object, **kwargs: object) -> None:
        raise Exception("Service internal error: Shard is not initialized")  # what an engine raises

    monkeypatch.setattr(store, "get", broken)
    r = client.get("/v1/products/abc", headers={"X-Request-ID": "req-500-test"})
    assert "req-500-test" in detail(r, 500)
    assert r.headers["x-request-id"] == "req-500-test"
    assert any("Shard is not initialized" in (rec.exc_text or "") for rec in caplog.records)


def test_a_503_names_no_server_and_no_command_line(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]

    def down(*args: object, **kwargs: object) -> None:
        raise StoreUnavailableError(f"cannot reach http://{SECRET}")

    monkeypatch.setattr(services.store, "get", down)
    assert SECRET not in detail(client.get("/v1/products/abc"), 503)
    monkeypatch.setattr(services, "store", None)
    monkeypatch.setitem(services.problems, "store", "locked by pid 42: niteru serve --token s3cr3t")
    assert "s3cr3t" not in detail(client.get("/v1/products/abc"), 503)
    assert "s3cr3t" not in client.get("/readyz").text


def test_the_key_is_checked_before_the_body_is_read(settings: Settings) -> None:
    keyed = settings.model_copy(update={"api_key": SecretStr("k"), "store_dir": settings.data_dir / "keyed"})
    with TestClient(create_app(keyed, embedders=fake_embedders(keyed))) as c:
        json_type = {"content-type": "application/json"}
        detail(c.put("/v1/products/x5", content=b"{not json", headers=json_type), 401)
        multipart = {"content-type": "multipart/form-data"}
        detail(c.put("/v1/products/x5/image", content=b"--b\r\n", headers=multipart), 401)
        detail(c.put("/v1/products/x5", content=b"{not json", headers={**json_type, "X-API-Key": "k"}), 422)
        assert c.post("/v1/search/text", json={"text": "cushion"}).status_code != 401  # reads stay open


def test_every_operation_documents_the_statuses_it_can_answer(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            assert {"413", "500"} <= documented, (method, path)
            if path.startswith("/v1/"):
                assert {"401", "422", "503"} <= documented, (method, path)


def test_the_web_page_never_sends_the_key_to_an_image_host() -> None:
    script = (Path(__file__).parents[1] / "api" / "web" / "app.js").read_text()
    assert 'redirect: "manual"' in script  # a keyed fetch does not follow the 307 to a stored URL
    assert "img.src = item.image" in script  # a stored http(s) image is loaded by the browser, without a key
