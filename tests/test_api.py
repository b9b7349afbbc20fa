"""The REST API through the real app (TestClient) over the embedded store holding the ingested slice.

Products, similar products in each mode, filters, search by photo and by text, and the success paths of
PUT (catalog path, URL from a local HTTP server, upload). Error statuses: tests/test_api_errors.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from niteru.catalog import CatalogRow
from tests.store_fixtures import Ingested

pytestmark = [pytest.mark.weights, pytest.mark.catalog, pytest.mark.slow]


@pytest.fixture(scope="module")
def client(ingested: Ingested) -> Iterator[TestClient]:
    with TestClient(create_app(ingested.settings, embedders=ingested.embedders)) as c:
        yield c


def first(rows: list[CatalogRow], category: str) -> CatalogRow:
    return next(r for r in rows if r.category == category)


def test_health_ready_and_openapi(client: TestClient, ingested: Ingested) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["store"]["points"] >= len(ingested.good)
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/products/{product_id}", "/v1/products/{product_id}/similar", "/v1/search/image"} <= set(paths)


def test_get_returns_the_stored_product(client: TestClient, ingested: Ingested) -> None:
    row = first(ingested.good, "home")
    body = client.get(f"/v1/products/{row.product_id}").json()
    assert (body["product_id"], body["title"], body["category"], body["image"]) == (
        row.product_id,
        row.title,
        row.category,
        row.image,
    )
    assert body["price"] == float(row.price)
    assert "server-timing" in client.get(f"/v1/products/{row.product_id}").headers


@pytest.mark.parametrize("mode", ["image", "text", "hybrid", "auto"])
def test_similar_in_each_mode(client: TestClient, ingested: Ingested, mode: str) -> None:
    row = first(ingested.good, "fashion")
    r = client.get(f"/v1/products/{row.product_id}/similar", params={"k": 7, "mode": mode})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [m["product_id"] for m in body["items"]]
    assert len(ids) == 7 and row.product_id not in ids and len(set(ids)) == 7
    scores = [m["score"] for m in body["items"]]
    assert scores == sorted(scores, reverse=True)
    if mode in ("image", "text"):
        # cosine scores, and exactly the brute-force nearest neighbours of the stored vectors
        store = client.app.state.services.store  # type: ignore[attr-defined]
        query = store.get(row.product_id, with_vectors=True).vectors[mode]
        others = {r.product_id: store.get(r.product_id, with_vectors=True) for r in ingested.good}
        cos = {pid: float(p.vectors[mode] @ query) for pid, p in others.items() if p and pid != row.product_id}
        expected = sorted(cos.values(), reverse=True)[:7]
        # The k best scores, each belonging to the id returned with it (equal scores, e.g. two products with
        # the same text, may come in either order, so ids are checked through their scores).
        assert scores == pytest.approx(expected, abs=1e-4)
        assert [cos[pid] for pid in ids] == pytest.approx(scores, abs=1e-4)


def test_auto_routes_by_the_stored_category(client: TestClient, ingested: Ingested) -> None:
    fashion = first(ingested.good, "fashion").product_id
    food = first(ingested.good, "food").product_id
    w_fashion = client.get(f"/v1/products/{fashion}/similar").json()["weights"]
    w_food = client.get(f"/v1/products/{food}/similar").json()["weights"]
    assert w_fashion["image"] > w_fashion["text"] and w_food["text"] > w_food["image"]


def test_similar_filters(client: TestClient, ingested: Ingested) -> None:
    row = first(ingested.good, "fashion")
    by_cat = client.get(f"/v1/products/{row.product_id}/similar", params={"k": 50, "category": "food"}).json()
    n_food = sum(r.category == "food" for r in ingested.good)
    assert len(by_cat["items"]) == n_food and {m["category"] for m in by_cat["items"]} == {"food"}

    shop = next(r for r in ingested.good if sum(o.shop_id == r.shop_id for o in ingested.good) > 2)
    url = f"/v1/products/{shop.product_id}/similar"
    everyone = client.get(url, params={"k": 50, "mode": "text"}).json()["items"]
    assert any(m["shop_id"] == shop.shop_id for m in everyone)
    others = client.get(url, params={"k": 50, "mode": "text", "exclude_same_shop": True}).json()["items"]
    assert others and all(m["shop_id"] != shop.shop_id for m in others)
    assert len(others) == len(everyone) - sum(m["shop_id"] == shop.shop_id for m in everyone)


def test_search_by_photo_finds_the_product(client: TestClient, ingested: Ingested) -> None:
    row = first(ingested.good, "food")
    data = (ingested.catalog / row.image).read_bytes()
    r = client.post("/v1/search/image", files={"file": ("photo.jpg", data, "image/jpeg")}, params={"k": 3})
    assert r.status_code == 200, r.text
    top = r.json()["items"][0]
    assert top["product_id"] == row.product_id and top["score"] == pytest.approx(1.0, abs=1e-3)
    filtered = client.post(
        "/v1/search/image", files={"file": ("p.jpg", data, "image/jpeg")}, params={"k": 5, "category": "fashion"}
    ).json()["items"]
    assert filtered and {m["category"] for m in filtered} == {"fashion"}


def test_search_by_text_finds_the_product(client: TestClient, ingested: Ingested) -> None:
    row = first(ingested.good, "home")
    r = client.post("/v1/search/text", json={"text": row.title, "k": 3})
    assert r.status_code == 200, r.text
    assert row.product_id in [m["product_id"] for m in r.json()["items"]]


def test_put_from_catalog_path_then_unchanged_then_text_update(client: TestClient, ingested: Ingested) -> None:
    src = first(ingested.good, "cosmetics")
    body = {
        "shop_id": "shop-a",
        "title": src.title,
        "description": src.description,
        "category": src.category,
        "subcategory": src.subcategory,
        "price": 12.5,
        "image_path": src.image,
    }
    r = client.put("/v1/products/new-1", json=body)
    assert r.status_code == 201 and r.json()["status"] == "created", r.text
    assert client.put("/v1/products/new-1", json=body).json()["status"] == "unchanged"
    # the same photo as the catalog product: image similarity ~1
    sim = client.get("/v1/products/new-1/similar", params={"mode": "image", "k": 1}).json()["items"][0]
    assert sim["product_id"] == src.product_id and sim["score"] == pytest.approx(1.0, abs=1e-3)

    version = r.json()["image_version"]
    update = {k: v for k, v in body.items() if k != "image_path"} | {"title": "Renamed " + src.title, "price": 9.0}
    r = client.put("/v1/products/new-1", json=update)
    assert r.status_code == 200 and r.json()["status"] == "updated", r.text
    got = client.get("/v1/products/new-1").json()
    assert got["title"].startswith("Renamed") and got["price"] == 9.0 and got["image_version"] == version


def test_put_from_url_on_a_local_server(client: TestClient, ingested: Ingested, image_server: str) -> None:
    row = first(ingested.good, "drinks_dairy")
    body = {"shop_id": "s", "title": row.title, "category": row.category, "image_url": f"{image_server}/{row.image}"}
    r = client.put("/v1/products/from-url", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["image"].endswith(row.image)
    top = client.get("/v1/products/from-url/similar", params={"mode": "image", "k": 1}).json()["items"][0]
    assert top["product_id"] == row.product_id


def test_put_by_upload_then_delete(client: TestClient, ingested: Ingested) -> None:
    row = first(ingested.good, "electronics")
    data = (ingested.catalog / row.image).read_bytes()
    product = json.dumps({"shop_id": "s", "title": row.title, "category": "electronics"})
    r = client.put("/v1/products/up-1/image", files={"file": ("a.jpg", data, "image/jpeg")}, data={"product": product})
    assert r.status_code == 201, r.text
    assert r.json()["image"].startswith("upload:")
    # a new photo for the stored product, without repeating its fields
    other = (ingested.catalog / first(ingested.good, "food").image).read_bytes()
    r = client.put("/v1/products/up-1/image", files={"file": ("b.png", other, "application/octet-stream")})
    assert r.status_code == 200 and r.json()["status"] == "updated", r.text
    assert r.json()["title"] == row.title

    assert client.delete("/v1/products/up-1").status_code == 204
    assert client.get("/v1/products/up-1").status_code == 404
    ids = [m["product_id"] for m in client.post("/v1/search/image", files={"file": ("x.jpg", other)}).json()["items"]]
    assert "up-1" not in ids
