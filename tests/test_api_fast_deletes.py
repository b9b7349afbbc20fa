"""Deletes through the API and the delete task leave a tombstone: a write of an older image still in
flight afterwards is refused (409 to a PUT, ``stale`` to a task) instead of bringing the product back."""

from __future__ import annotations

import json

from niteru.products import now_version
from tests.fast_fixtures import FastApi, photo
from tests.test_api_fast_ops import submit

FIELDS = {"shop_id": "s", "title": "Tombstoned teal vase", "category": "home"}


def put(api: FastApi, pid: str, version: int | None, colour: tuple[int, int, int]) -> int:
    data = {"product": json.dumps({**FIELDS, "image_version": version})}
    files = {"file": ("v.png", photo(colour), "image/png")}
    status: int = api.client.put(f"/v1/products/{pid}/image", files=files, data=data).status_code
    return status


def test_a_put_of_an_older_image_after_a_delete_is_refused(fast_api: FastApi) -> None:
    before = now_version()  # an image stamped before the delete, arriving after it
    assert put(fast_api, "tomb-1", before - 10, (10, 120, 120)) == 201
    assert fast_api.client.delete("/v1/products/tomb-1").status_code == 204
    assert put(fast_api, "tomb-1", before, (20, 130, 130)) == 409
    assert fast_api.client.get("/v1/products/tomb-1").status_code == 404
    assert put(fast_api, "tomb-1", None, (30, 140, 140)) == 201  # a new image after the delete


def test_the_delete_task_uses_its_version(fast_api: FastApi) -> None:
    assert put(fast_api, "tomb-2", 1_000, (200, 20, 20)) == 201
    gone = fast_api.wait_task(submit(fast_api, "niteru.products.delete", product_id="tomb-2", version=2_000))
    assert gone["status"] == "succeeded" and gone["result"]["status"] == "deleted"
    assert put(fast_api, "tomb-2", 1_500, (210, 30, 30)) == 409  # older than the delete
    assert put(fast_api, "tomb-2", 2_001, (220, 40, 40)) == 201
