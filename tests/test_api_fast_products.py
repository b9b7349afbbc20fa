"""``/v1/products`` through the real app on both store engines, with the fake embedders (fast tier).

Put from a catalog path, a URL and an upload; unchanged and text-only updates; an older image refused;
an estimated category; get, list, the stored image, delete; and the refusals of bad images.
"""

from __future__ import annotations

import functools
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from niteru.photos import PHOTO_SIDE, read_photo
from tests.fast_fixtures import FastApi, photo, row_body

pytestmark = pytest.mark.catalog  # real catalog-dev rows, read in place


def assert_kept_photo(api: FastApi, ref: str) -> None:
    from PIL import Image

    with Image.open(io.BytesIO(read_photo(ref, api.settings))) as kept:
        assert kept.format == "JPEG" and max(kept.size) <= PHOTO_SIDE


def first(api: FastApi, category: str) -> int:
    return next(i for i, r in enumerate(api.rows) if r.category == category)


class _Photos(BaseHTTPRequestHandler):
    """Serves a synthetic photo at any path (the URL source of PUT)."""

    def __init__(self, body: bytes, *args: object) -> None:
        self.body = body
        super().__init__(*args)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def photo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Photos, photo((20, 160, 60))))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_get_returns_the_stored_fields(fast_api: FastApi) -> None:
    row = fast_api.rows[first(fast_api, "electronics")]
    r = fast_api.client.get(f"/v1/products/{row.product_id}")
    assert r.status_code == 200, r.text
    body = r.json()
    expected = row_body(row)
    assert {k: body[k] for k in ("shop_id", "title", "category", "subcategory", "price")} == {
        k: expected[k] for k in ("shop_id", "title", "category", "subcategory", "price")
    }
    assert body["image"] == row.image and body["category_estimated"] is False
    assert body["image_model_version"] == fast_api.embedders.image.version
    assert "server-timing" in r.headers
    assert fast_api.client.get("/v1/products/no-such-product").status_code == 404


def test_list_counts_every_category_filters_and_pages(fast_api: FastApi) -> None:
    client = fast_api.client
    everything = client.get("/v1/products", params={"limit": 100}).json()
    ids = [p["product_id"] for p in everything["items"]]
    assert {r.product_id for r in fast_api.rows} <= set(ids) and len(ids) == len(set(ids))
    assert sum(everything["categories"].values()) == everything["total"] == len(ids)
    food = client.get("/v1/products", params={"category": "food", "limit": 100}).json()
    assert food["total"] == everything["categories"]["food"] == len(food["items"])
    assert {p["category"] for p in food["items"]} == {"food"}
    # pages in a stable order: two pages of 4 are the first 8 of the whole list
    pages = [client.get("/v1/products", params={"offset": o, "limit": 4}).json() for o in (0, 4)]
    assert [p["product_id"] for page in pages for p in page["items"]] == ids[:8]
    assert pages[1]["offset"] == 4
    assert client.get("/v1/products", params={"limit": 10_000}).status_code == 422


def test_put_from_catalog_path_unchanged_then_text_update(fast_api: FastApi) -> None:
    client = fast_api.client
    src = fast_api.rows[first(fast_api, "cosmetics")]
    body = row_body(src) | {"shop_id": "shop-a", "price": 12.5}
    r = client.put("/v1/products/put-path", json=body)
    assert r.status_code == 201 and r.json()["status"] == "created", r.text
    again = client.put("/v1/products/put-path", json=body)
    assert again.status_code == 200 and again.json()["status"] == "unchanged"
    # the same photo as the catalog product: image similarity 1
    top = client.get("/v1/products/put-path/similar", params={"mode": "image", "k": 1}).json()["items"][0]
    assert top["product_id"] == src.product_id and top["score"] == pytest.approx(1.0, abs=1e-4)

    version = r.json()["image_version"]
    update = {k: v for k, v in body.items() if k != "image_path"} | {"title": "Renamed lipstick", "price": 9.0}
    r = client.put("/v1/products/put-path", json=update)
    assert r.status_code == 200 and r.json()["status"] == "updated", r.text
    got = client.get("/v1/products/put-path").json()
    assert (got["title"], got["price"], got["image_version"]) == ("Renamed lipstick", 9.0, version)
    # the text vector follows the new title: a search for it finds the product with cosine 1, and with the
    # title bonus of its words on top (the title's lexical vector follows too)
    hits = client.post("/v1/search/text", json={"text": "Renamed lipstick", "k": 1}).json()["items"]
    assert hits[0]["product_id"] == "put-path" and hits[0]["score"] > 1.05


def test_put_from_url_and_its_image_redirects(fast_api: FastApi, photo_server: str) -> None:
    client = fast_api.client
    body = {"shop_id": "s", "title": "Green block from a URL", "category": "home", "image_url": f"{photo_server}/g.png"}
    r = client.put("/v1/products/put-url", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["image"] == f"{photo_server}/g.png"
    image = client.get("/v1/products/put-url/image", follow_redirects=False)
    assert image.status_code == 307 and image.headers["location"] == f"{photo_server}/g.png"
    assert_kept_photo(fast_api, r.json()["image"])  # for the rebuild's look-alike work: the URL is not fetched again
    # an address outside the allow-list is refused before anything is fetched
    refused = client.put("/v1/products/put-url-2", json=body | {"image_url": "http://10.0.0.1/x.png"})
    assert refused.status_code == 422, refused.text


def test_upload_new_photo_keeps_fields_then_delete(fast_api: FastApi) -> None:
    client = fast_api.client
    product = json.dumps({"shop_id": "s", "title": "Uploaded yellow lamp", "category": "home"})
    first_photo = photo((230, 210, 20))
    r = client.put(
        "/v1/products/up-1/image", files={"file": ("a.png", first_photo, "image/png")}, data={"product": product}
    )
    assert r.status_code == 201 and r.json()["image"].startswith("upload:"), r.text
    # the vector and a small copy for the rebuild's look-alike work are kept: no image to serve
    assert client.get("/v1/products/up-1/image").status_code == 404
    assert_kept_photo(fast_api, r.json()["image"])
    # a new photo for the stored product without repeating its fields (octet-stream: the bytes decide)
    second = photo((20, 20, 20), fmt="JPEG")
    r = client.put("/v1/products/up-1/image", files={"file": ("b.jpg", second, "application/octet-stream")})
    assert r.status_code == 200 and r.json()["status"] == "updated", r.text
    assert r.json()["title"] == "Uploaded yellow lamp"
    hits = client.post("/v1/search/image", files={"file": ("q.jpg", second, "image/jpeg")}, params={"k": 1})
    assert hits.json()["items"][0]["product_id"] == "up-1"

    assert client.delete("/v1/products/up-1").status_code == 204
    assert client.get("/v1/products/up-1").status_code == 404
    assert client.delete("/v1/products/up-1").status_code == 404
    ids = [m["product_id"] for m in client.post("/v1/search/image", files={"file": ("q.jpg", second)}).json()["items"]]
    assert "up-1" not in ids


def test_catalog_image_is_served(fast_api: FastApi) -> None:
    row = fast_api.rows[0]
    r = fast_api.client.get(f"/v1/products/{row.product_id}/image")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == (fast_api.settings.catalog_dir / row.image).read_bytes()


def test_an_older_image_is_refused_and_a_newer_one_replaces(fast_api: FastApi) -> None:
    client = fast_api.client
    fields = {"shop_id": "s", "title": "Versioned vase", "category": "home", "image_version": 100}
    src, other = fast_api.rows[0], fast_api.rows[1]
    assert client.put("/v1/products/versioned", json=fields | {"image_path": src.image}).status_code == 201
    late = client.put("/v1/products/versioned", json=fields | {"image_path": other.image, "image_version": 50})
    assert late.status_code == 409, late.text
    assert client.get("/v1/products/versioned").json()["image"] == src.image
    newer = client.put("/v1/products/versioned", json=fields | {"image_path": other.image, "image_version": 200})
    assert newer.status_code == 200 and newer.json()["image_version"] == 200


def test_a_product_without_category_gets_an_estimated_one(fast_api: FastApi) -> None:
    client = fast_api.client
    src = fast_api.rows[first(fast_api, "food")]
    body = row_body(src) | {"category": ""}
    r = client.put("/v1/products/no-category", json=body)
    assert r.status_code == 201, r.text
    got = client.get("/v1/products/no-category").json()
    known = {r.category for r in fast_api.rows}
    assert got["category_estimated"] is True and got["category"] in known


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b"", "image/png", 422),  # empty
        (b"this is not a picture\n", "image/jpeg", 415),  # not an image
        (photo((1, 2, 3), fmt="JPEG")[:200], "image/jpeg", 422),  # truncated
        (photo((1, 2, 3), size=(4, 4)), "image/png", 422),  # too small
        (photo((1, 2, 3)), "text/plain", 415),  # a declared non-image type, unread
    ],
)
def test_bad_uploads_are_refused_as_in_production(
    fast_api: FastApi, data: bytes, content_type: str, status: int
) -> None:
    product = json.dumps({"shop_id": "s", "title": "Bad upload", "category": "home"})
    r = fast_api.client.put(
        "/v1/products/bad-upload/image", files={"file": ("x", data, content_type)}, data={"product": product}
    )
    assert r.status_code == status, r.text
    assert fast_api.client.get("/v1/products/bad-upload").status_code == 404


def test_an_upload_over_the_size_limit_is_413(fast_api: FastApi) -> None:
    limit = fast_api.settings.api_max_upload_bytes
    noise = np.random.default_rng(0).integers(0, 256, size=limit + 1, dtype=np.uint8).tobytes()
    r = fast_api.client.post("/v1/search/image", files={"file": ("big.png", noise, "image/png")})
    assert r.status_code == 413, r.text


def test_a_new_product_without_an_image_source_is_422(fast_api: FastApi) -> None:
    r = fast_api.client.put("/v1/products/no-image", json={"shop_id": "s", "title": "Nothing to see"})
    assert r.status_code == 422 and "needs an image" in r.json()["detail"]
