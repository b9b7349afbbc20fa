"""Every error status of the API, with ``{"detail": ...}`` bodies, and a restart that keeps the data."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from niteru.settings import Settings
from tests.store_fixtures import Ingested

pytestmark = [pytest.mark.weights, pytest.mark.catalog, pytest.mark.slow]


@pytest.fixture(scope="module")
def client(ingested: Ingested) -> Iterator[TestClient]:
    with TestClient(create_app(ingested.settings, embedders=ingested.embedders)) as c:
        yield c


@pytest.fixture
def small(ingested: Ingested, tmp_path: Path) -> Settings:
    """An empty store of its own with a 50 kB image cap."""
    return ingested.settings.model_copy(update={"store_dir": tmp_path / "qdrant", "api_max_upload_bytes": 50_000})


def product(ingested: Ingested, **extra: object) -> dict[str, object]:
    row = ingested.good[0]
    return {"shop_id": "s", "title": row.title, "category": row.category, "image_path": row.image} | extra


def detail(r: object, status: int) -> str:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert set(body) == {"detail"}
    return str(body["detail"])


def test_404_unknown_product(client: TestClient) -> None:
    assert "no-such" in detail(client.get("/v1/products/no-such"), 404)
    detail(client.delete("/v1/products/no-such"), 404)
    detail(client.get("/v1/products/no-such/similar"), 404)
    jpeg = b"\xff\xd8\xff\xe0" + b"\0" * 100
    detail(client.put("/v1/products/no-such/image", files={"file": ("a.jpg", jpeg, "image/jpeg")}), 404)


@pytest.mark.parametrize("params", [{"k": 0}, {"k": 10_000}, {"mode": "colour"}, {"exclude_same_shop": "perhaps"}])
def test_422_bad_similar_parameters(client: TestClient, ingested: Ingested, params: dict[str, object]) -> None:
    detail(client.get(f"/v1/products/{ingested.good[0].product_id}/similar", params=params), 422)


def test_422_bad_products(client: TestClient, ingested: Ingested, image_server: str) -> None:
    put = client.put
    assert "title" in detail(put("/v1/products/x1", json=product(ingested, title="  ")), 422)
    assert "needs an image" in detail(put("/v1/products/x1", json=product(ingested, image_path=None)), 422)
    both = product(ingested, image_url=f"{image_server}/{ingested.good[0].image}")
    assert "not both" in detail(put("/v1/products/x1", json=both), 422)
    assert "relative" in detail(put("/v1/products/x1", json=product(ingested, image_path="../../etc/passwd")), 422)
    assert "does not exist" in detail(put("/v1/products/x1", json=product(ingested, image_path="images/nope.jpg")), 422)
    missing = product(ingested, image_path=None, image_url=f"{image_server}/images/nope.jpg")
    assert "404" in detail(put("/v1/products/x1", json=missing), 422)
    detail(put("/v1/products/x1", json=product(ingested, image_url="ftp://example.com/a.jpg", image_path=None)), 422)
    detail(put("/v1/products/" + "x" * 201, json=product(ingested)), 422)
    detail(put("/v1/products/x1", json=product(ingested, price=-1)), 422)
    detail(put("/v1/products/x1", content=b"{not json", headers={"content-type": "application/json"}), 422)
    assert "no word" in detail(put("/v1/products/x1", json=product(ingested, title="!!! ???")), 422)
    assert client.get("/v1/products/x1").status_code == 404  # nothing was stored on the way


def test_422_bad_images_and_text(client: TestClient, ingested: Ingested) -> None:
    real = (ingested.catalog / ingested.good[0].image).read_bytes()
    corrupt = client.post("/v1/search/image", files={"file": ("a.jpg", real[: len(real) // 3], "image/jpeg")})
    assert "corrupt" in detail(corrupt, 422)
    from PIL import Image

    tiny = Path(ingested.catalog / "tiny.png")
    Image.new("RGB", (3, 3)).save(tiny)
    assert "too_small" in detail(client.post("/v1/search/image", files={"file": ("t.png", tiny.read_bytes())}), 422)
    assert "empty" in detail(client.post("/v1/search/image", files={"file": ("e.jpg", b"", "image/jpeg")}), 422)
    detail(client.post("/v1/search/text", json={"text": "   "}), 422)
    detail(client.post("/v1/search/text", json={"text": "shirt", "k": 0}), 422)
    assert "no word" in detail(client.post("/v1/search/text", json={"text": "@@@ ###"}), 422)
    bad_form = client.put(
        "/v1/products/x2/image", files={"file": ("a.jpg", real, "image/jpeg")}, data={"product": '{"title": 1}'}
    )
    assert bad_form.status_code == 422, bad_form.text
    (error,) = [e for e in bad_form.json()["detail"] if e["loc"] == ["body", "title"]]  # named like a JSON body's
    assert error["reason"] == "invalid_title"


def test_415_not_an_image(client: TestClient, ingested: Ingested, image_server: str) -> None:
    text = b"name,price\nshirt,10\n"
    assert "not an image" in detail(client.post("/v1/search/image", files={"file": ("a.csv", text, "text/csv")}), 415)
    assert "not_an_image" in detail(client.post("/v1/search/image", files={"file": ("a.jpg", text, "image/jpeg")}), 415)
    (ingested.catalog / "notes.txt").write_bytes(text)
    body = product(ingested, image_path=None, image_url=f"{image_server}/notes.txt")
    detail(client.put("/v1/products/x3", json=body), 415)
    detail(client.put("/v1/products/x3", json=product(ingested, image_path="products.csv")), 415)


def test_413_too_large(client: TestClient, ingested: Ingested, small: Settings, image_server: str) -> None:
    huge = b"\xff\xd8\xff" + b"\0" * (50 * 1024 * 1024)
    assert "limit" in detail(client.post("/v1/search/image", files={"file": ("big.jpg", huge, "image/jpeg")}), 413)
    # a chunked body declares no length: it is cut off once past the cap, still with a JSON detail
    chunks = (b" " * 1024 * 1024 for _ in range(12))
    chunked = client.post("/v1/search/text", content=chunks, headers={"content-type": "application/json"})
    detail(chunked, 413)
    (ingested.catalog / "big.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 200_000)
    with TestClient(create_app(small, embedders=ingested.embedders)) as c:
        url = product(ingested, image_path=None, image_url=f"{image_server}/big.jpg")
        assert "limit" in detail(c.put("/v1/products/x4", json=url), 413)
        detail(c.put("/v1/products/x4", json=product(ingested, image_path="big.jpg")), 413)
        part = b"\xff\xd8\xff" + b"\0" * 60_000  # under the body cap (limit + slack), over the image cap
        detail(c.post("/v1/search/image", files={"file": ("b.jpg", part, "image/jpeg")}), 413)


def test_409_an_older_image_is_refused(client: TestClient, ingested: Ingested) -> None:
    assert client.put("/v1/products/v1", json=product(ingested, image_version=1000)).status_code == 201
    other = ingested.good[5].image
    assert "newer image" in detail(
        client.put("/v1/products/v1", json=product(ingested, image_path=other, image_version=999)), 409
    )
    assert client.get("/v1/products/v1").json()["image"] == ingested.good[0].image
    assert (
        client.put("/v1/products/v1", json=product(ingested, image_path=other, image_version=1001)).status_code == 200
    )


@pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning")
def test_503_when_the_store_server_is_down(ingested: Ingested, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = ingested.settings.model_copy(update={"qdrant_url": f"http://127.0.0.1:{port}", "qdrant_timeout": 1.0})
    with TestClient(create_app(down, embedders=ingested.embedders)) as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["store"] != "ok"
        # The caller learns the part, not the server's address (that is in the log).
        answer = detail(c.get(f"/v1/products/{ingested.good[0].product_id}"), 503)
        assert answer.startswith("store unavailable") and "127.0.0.1" not in answer
        detail(c.get(f"/v1/products/{ingested.good[0].product_id}/similar"), 503)


def test_503_without_a_text_model_loads_the_image_model_itself(ingested: Ingested, tmp_path: Path) -> None:
    bare = ingested.settings.model_copy(update={"data_dir": tmp_path, "store_dir": tmp_path / "q"})
    with TestClient(create_app(bare)) as c:
        ready = c.get("/readyz").json()
        assert ready["checks"]["image"] == "ok" and ready["checks"]["text"].startswith("unavailable")
        assert "text model" in detail(c.post("/v1/search/text", json={"text": "shirt"}), 503)
        detail(c.put("/v1/products/x5", json=product(ingested)), 503)
        detail(c.get("/v1/products/x5"), 503)  # an empty embedded store without models has no collection


def test_restart_keeps_the_data(ingested: Ingested, small: Settings) -> None:
    with TestClient(create_app(small, embedders=ingested.embedders)) as c:
        assert c.put("/v1/products/keep-me", json=product(ingested)).status_code == 201
        assert (
            c.put("/v1/products/keep-too", json=product(ingested, image_path=ingested.good[3].image)).status_code == 201
        )
        assert c.delete("/v1/products/keep-too").status_code == 204
    with TestClient(create_app(small, embedders=ingested.embedders)) as c:
        assert c.get("/v1/products/keep-me").json()["title"] == ingested.good[0].title
        assert c.get("/v1/products/keep-too").status_code == 404
        assert c.get("/readyz").json()["store"]["points"] == 1


def test_api_refuses_an_internal_host_that_is_not_allowed(
    client: TestClient, ingested: Ingested, image_server: str
) -> None:
    row = ingested.good[0]
    # The same test server, reached as "localhost": not in the allow list, so never fetched.
    url = image_server.replace("127.0.0.1", "localhost") + "/" + row.image
    body = {"shop_id": "s", "title": row.title, "category": row.category, "image_url": url}
    response = client.put("/v1/products/ssrf-probe", json=body)
    assert response.status_code == 422
    assert "unsafe_url" in response.json()["detail"] and "127.0.0.1" not in response.json()["detail"]
    assert client.get("/v1/products/ssrf-probe").status_code == 404
