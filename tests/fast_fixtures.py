"""Fixtures of the fast API tests: the real app over either store engine, with the fake embedders.

Each test module gets, per engine, a fresh data folder holding a handful of real catalog-dev products
(read in place: ``catalog_dir`` is catalog-dev itself, nothing is copied) and a few synthetic ones made
here, all stored through ``PUT`` like a shop would; and a category classifier trained on the fake
vectors of the real rows, so the estimated-category paths run too. The fakes also serve as the oracle:
a test computes the expected vectors with them, independently of the store.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from embedding.category import save_category_model, train_category_model
from jobs.inline import TaskState
from niteru.catalog import CatalogRow, read_catalog
from niteru.categorize import category_dir
from niteru.embedders import Embedders
from niteru.settings import Settings
from tests.fakes import fake_embedders

ENGINES = ("edge", "qdrant")
# Real products per category: enough for the classifier (3+ per category) and for filters to bite.
PER_CATEGORY = {"fashion": 6, "food": 5, "cosmetics": 5, "home": 3, "electronics": 3}
# Synthetic products: id -> (shop, category, price, colour of the photo). Two share a shop and a look.
SYNTHETIC: dict[str, tuple[str, str, float, tuple[int, int, int]]] = {
    "syn-red-1": ("shop-syn", "home", 10.0, (200, 30, 30)),
    "syn-red-2": ("shop-syn", "home", 20.0, (190, 40, 35)),
    "syn-blue": ("shop-other", "home", 30.0, (30, 40, 200)),
}


def photo(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> bytes:
    """A synthetic product photo: a coloured block on white (the layout the fake image vector sees)."""
    image = Image.new("RGB", size, (255, 255, 255))
    image.paste(Image.new("RGB", (size[0] // 2, size[1] // 2), colour), (size[0] // 4, size[1] // 4))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def spread(rows: list[CatalogRow], n: int) -> list[CatalogRow]:
    return [rows[i * len(rows) // n] for i in range(n)]


@pytest.fixture(scope="session")
def fast_rows(catalog_dir: Path) -> list[CatalogRow]:
    """A few real rows per category, spread over the catalog (so over shops and sources)."""
    rows = read_catalog(catalog_dir)
    return [r for c, n in PER_CATEGORY.items() for r in spread([r for r in rows if r.category == c], n)]


def row_body(row: CatalogRow) -> dict[str, Any]:
    return {
        "shop_id": row.shop_id,
        "title": row.title,
        "description": row.description,
        "category": row.category,
        "subcategory": row.subcategory,
        "price": float(row.price) if row.price else None,
        "image_path": row.image,
    }


@dataclass
class FastApi:
    client: TestClient
    settings: Settings
    engine: str
    rows: list[CatalogRow]
    embedders: Embedders  # the fakes the app runs on: the tests' oracle for expected vectors

    def image_vector(self, row: CatalogRow) -> np.ndarray:
        return self.embedders.image.embed_one((self.settings.catalog_dir / row.image).read_bytes())

    def text_vector(self, text: str) -> np.ndarray:
        vector: np.ndarray = self.embedders.text.embed([text])[0]
        return vector

    def wait_task(self, task_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll the task's state until it is final (the state is what we synchronise on)."""
        return wait_task_state(self.client, task_id, timeout)


def wait_state(states: Callable[[], TaskState | dict[str, Any] | None], want: set[str], timeout: float = 60) -> Any:
    """Poll a task's state until it is one of ``want`` (the state is what the test synchronises on)."""
    deadline = time.monotonic() + timeout
    while True:
        state = states()
        status = state.status if isinstance(state, TaskState) else (state or {}).get("status")
        if status in want:
            return state
        assert time.monotonic() < deadline, f"state {state} never reached {want}"
        time.sleep(0.01)


def wait_task_state(client: TestClient, task_id: str, timeout: float = 60) -> dict[str, Any]:
    """``GET /v1/tasks/{task_id}`` until the task has succeeded or failed."""
    state: dict[str, Any] = wait_state(lambda: client.get(f"/v1/tasks/{task_id}").json(), FINAL, timeout)
    return state


FINAL = {"succeeded", "failed"}


def train_classifier(settings: Settings, embedders: Embedders, rows: list[CatalogRow]) -> None:
    images = embedders.image.embed_sources([(settings.catalog_dir / r.image).read_bytes() for r in rows])
    assert not images.errors
    texts = embedders.text.embed([f"{r.title}\n{r.description}".strip() for r in rows])
    model = train_category_model(images.vectors, texts, [r.category for r in rows], min_class_size=3)
    save_category_model(model, category_dir(settings))


@pytest.fixture(scope="module", params=ENGINES)
def fast_api(
    request: pytest.FixtureRequest,
    catalog_dir: Path,
    fast_rows: list[CatalogRow],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FastApi]:
    from api.app import create_app

    engine: str = request.param
    settings = Settings(
        data_dir=tmp_path_factory.mktemp(f"fast-{engine}"),
        catalog_dir=catalog_dir,
        store_engine=engine,
        # the tests' own image server is on 127.0.0.1, an internal address refused unless allowed
        image_fetch_allow_hosts=["127.0.0.1"],
        # nothing here needs Redis: tasks run inline, and /metrics reads a broker that is not there
        celery_broker_url="redis://127.0.0.1:1/0",
        metrics_broker_timeout=0.2,
    )
    embedders = fake_embedders(settings)
    train_classifier(settings, embedders, fast_rows)
    with TestClient(create_app(settings, embedders=embedders)) as client:
        for row in fast_rows:
            r = client.put(f"/v1/products/{row.product_id}", json=row_body(row))
            assert r.status_code == 201, r.text
        for pid, (shop, category, price, colour) in SYNTHETIC.items():
            fields = {"shop_id": shop, "title": f"Synthetic {pid} cushion", "category": category, "price": price}
            r = client.put(
                f"/v1/products/{pid}/image",
                files={"file": (f"{pid}.png", photo(colour), "image/png")},
                data={"product": json.dumps(fields)},
            )
            assert r.status_code == 201, r.text
        yield FastApi(client, settings, engine, fast_rows, embedders)
