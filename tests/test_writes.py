"""One write path: the same bad product gets the same refusal through every door (API PUT, ``POST
/v1/tasks`` run by the inline executor, the task handler Celery runs, an ingest row), and a product sent
without a category gets an estimated category, marked as estimated, through every door.

Real models (the ``ingested`` slice): the image model decides what a corrupt image is, the text model what
a text without words is, the classifier what the estimate is.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.services import Services
from jobs import registry
from jobs.context import JobContext
from niteru.categorize import category_dir
from niteru.ingest import ingest_catalog
from niteru.settings import Settings
from tests.store_fixtures import Ingested, write_catalog

pytestmark = [pytest.mark.weights, pytest.mark.catalog, pytest.mark.slow]
DOORS = ("api", "tasks_api", "handler", "ingest")
MAX_VERSION = 2**53 - 1


@dataclass
class Env:
    client: TestClient
    settings: Settings
    ingested: Ingested
    tmp: Path

    @property
    def services(self) -> Services:
        services: Services = self.client.app.state.services  # type: ignore[attr-defined]
        return services


def _env(ingested: Ingested, tmp: Path, classifier: bool) -> Iterator[Env]:
    data = tmp / "data"
    shutil.copytree(ingested.settings.data_dir, data)
    settings = ingested.settings.model_copy(update={"data_dir": data, "store_dir": data / "qdrant"})
    if not classifier:
        shutil.rmtree(category_dir(settings))
    with TestClient(create_app(settings, embedders=ingested.embedders)) as client:
        yield Env(client, settings, ingested, tmp)


@pytest.fixture(scope="module")
def env(ingested: Ingested, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from _env(ingested, tmp_path_factory.mktemp("writes"), classifier=True)


@pytest.fixture(scope="module")
def bare(ingested: Ingested, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """No category classifier anywhere: a product without a category cannot be written."""
    yield from _env(ingested, tmp_path_factory.mktemp("bare"), classifier=False)


def product(ingested: Ingested, **changes: Any) -> dict[str, Any]:
    row = ingested.good[5]
    fields = {"shop_id": "shop-w", "title": row.title, "category": row.category, "description": row.description}
    return {"fields": {**fields, **changes.pop("fields", {})}, "image": row.image, **changes}


def reason_of(result: dict[str, Any]) -> str:
    return str(result["reason"] if result["status"] == "failed" else result["status"])


def through_api(env: Env, pid: str, item: dict[str, Any]) -> str:
    body = {**item["fields"], "image_path": item["image"], "image_version": item.get("image_version")}
    r = env.client.put(f"/v1/products/{pid}", json=body)
    if r.is_success:
        return str(r.json()["status"])
    detail = r.json()["detail"]
    assert detail.startswith("refused ("), detail
    return str(detail.split("(", 1)[1].split(")", 1)[0])


def through_tasks_api(env: Env, pid: str, item: dict[str, Any]) -> str:
    kwargs = {"product_id": pid, **item}
    r = env.client.post("/v1/tasks", json={"name": registry.IMAGE, "kwargs": kwargs})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    while (state := env.client.get(f"/v1/tasks/{r.json()['task_id']}").json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    return reason_of(state["result"])


def through_handler(env: Env, pid: str, item: dict[str, Any]) -> str:
    """What a Celery worker runs for the task (``jobs.tasks`` wraps ``registry.perform``)."""
    s = env.services
    ctx = JobContext(env.settings, s.embedders(), s.need_store(), s.category, s.problems.get("category", ""))
    return reason_of(registry.perform(ctx, registry.IMAGE, {"product_id": pid, **item}, "test-task").result)


def through_ingest(env: Env, pid: str, item: dict[str, Any]) -> str:
    columns = {"price": "", **{k: "" if v is None else str(v) for k, v in item["fields"].items()}}
    row = replace(env.ingested.good[5], product_id=pid, image=item["image"], line=1, **columns)
    folder = env.tmp / f"catalog-{pid}"
    write_catalog(folder, [row], env.ingested.catalog)
    errors = env.tmp / f"errors-{pid}.jsonl"
    s = env.services
    report = ingest_catalog(
        folder, env.settings, store=s.need_store(), embedders=s.embedders(), errors_path=errors, train_category=False
    )
    s.listing.invalidate()
    if report.failed:
        return str(json.loads(errors.read_text().splitlines()[0])["reason"])
    return "stale" if report.stale else "unchanged" if report.unchanged else "created"


THROUGH: dict[str, Callable[[Env, str, dict[str, Any]], str]] = {
    "api": through_api,
    "tasks_api": through_tasks_api,
    "handler": through_handler,
    "ingest": through_ingest,
}


@pytest.mark.parametrize(
    ("case", "changes", "reason"),
    [
        ("corrupt", {"image": "images/bad-corrupt-image.jpg"}, "corrupt"),
        ("not-an-image", {"image": "images/bad-text-as-image.jpg"}, "not_an_image"),
        ("no-words", {"fields": {"title": "!!! ???", "description": ""}}, "text_has_no_words"),
    ],
)
def test_the_same_bad_product_gets_the_same_reason_through_every_door(
    env: Env, case: str, changes: dict[str, Any], reason: str
) -> None:
    item = product(env.ingested, **changes)
    got = {door: THROUGH[door](env, f"{case}-{door}", item) for door in DOORS}
    assert got == dict.fromkeys(DOORS, reason)
    for door in DOORS:
        assert env.client.get(f"/v1/products/{case}-{door}").status_code == 404


@pytest.mark.parametrize(
    ("name", "value", "reason", "rule"),
    [("title", "   ", "empty_title", "must not be empty"), ("price", -1, "invalid_price", "greater than or equal")],
)
def test_a_bad_field_is_refused_for_that_field_through_every_door(
    env: Env, name: str, value: object, reason: str, rule: str
) -> None:
    item = product(env.ingested, fields={name: value})
    # The API checks a JSON body before the core sees it; its 422 names the same field, rule and reason code.
    r = env.client.put(f"/v1/products/{reason}-api", json={**item["fields"], "image_path": item["image"]})
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", name] and rule in error["msg"] and error["reason"] == reason
    others = {door: THROUGH[door](env, f"{reason}-{door}", item) for door in DOORS if door != "api"}
    assert others == dict.fromkeys(others, reason)


def test_an_older_image_is_stale_through_every_door(env: Env) -> None:
    got = {}
    for door in DOORS:
        pid = f"stale-{door}"
        newest = product(env.ingested, image_version=MAX_VERSION)  # newer than any file's mtime as well
        assert through_api(env, pid, newest) == "created"
        older = product(env.ingested, image=env.ingested.good[6].image, image_version=10)
        got[door] = THROUGH[door](env, pid, older)
        assert env.client.get(f"/v1/products/{pid}").json()["image"] == newest["image"]
    assert got == dict.fromkeys(DOORS, "stale")


def test_a_product_without_a_category_gets_an_estimate_marked_as_estimated_through_every_door(env: Env) -> None:
    row = env.ingested.good[5]
    item = product(env.ingested, fields={"category": ""})
    for door in DOORS:
        assert THROUGH[door](env, f"nocat-{door}", item) == "created", door
        stored = env.client.get(f"/v1/products/nocat-{door}").json()
        assert stored["category_estimated"] is True and stored["category"], (door, stored)
        assert stored["category"] == row.category  # the classifier knows this product's own photo and title
    # a text update that names the category makes it the shop's again
    fields = {**item["fields"], "category": row.category, "title": "Renamed " + row.title}
    assert env.client.put("/v1/products/nocat-api", json=fields).json()["category_estimated"] is False


def test_without_a_classifier_a_product_without_a_category_is_refused_through_every_door(bare: Env) -> None:
    item = product(bare.ingested, fields={"category": ""})
    got = {door: THROUGH[door](bare, f"nocat-{door}", item) for door in DOORS}
    assert got == dict.fromkeys(DOORS, "no_category_model")
    r = bare.client.put("/v1/products/nocat-api", json={**item["fields"], "image_path": item["image"]})
    assert r.status_code == 422 and "send a category" in r.json()["detail"]


def test_task_arguments_are_strict_in_the_api_and_in_the_worker(env: Env) -> None:
    strict = {"product_id": "strict-1", **product(env.ingested)}
    for bad in ({"image_version": "3"}, {"image_version": True}, {"colour": "red"}):
        r = env.client.post("/v1/tasks", json={"name": registry.IMAGE, "kwargs": strict | bad})
        assert r.status_code == 422, (bad, r.text)
        assert through_handler(env, "strict-1", product(env.ingested) | bad) == "invalid_arguments"
    # in a batch, the bad item fails alone
    items = [strict, strict | {"product_id": "strict-2", "image_version": "3"}]
    s = env.services
    ctx = JobContext(env.settings, s.embedders(), s.need_store(), s.category)
    result = registry.perform(ctx, registry.IMAGES, {"items": items}, "test-batch").result
    assert [reason_of(i) for i in result["items"]] == ["created", "invalid_item"]
