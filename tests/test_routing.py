"""Routed hybrid retrieval (issue 5): the route, fusion, filters in every mode, explain, categorize.

Unit tests of the routing rule, then the real app over the ingested catalog slice (embedded store, real
MobileNet and text vectors, the category classifier that ingest trained on the slice).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from niteru.catalog import CatalogRow
from niteru.fusion import Fusion
from niteru.routing import Mode, blend, policy, route
from niteru.settings import Settings
from niteru.similar import SimilarOptions, similar_products
from niteru.store import Hit, SearchFilter
from tests.store_fixtures import Ingested

FUSIONS = [f.value for f in Fusion]
# The session's store was ingested, never rebuilt: it has no joint vectors (mode=joint is tested below and in
# tests/test_joint.py).
MODES = [m.value for m in Mode if m is not Mode.joint]


def first(rows: list[CatalogRow], category: str) -> CatalogRow:
    return next(r for r in rows if r.category == category)


# --- the routing rule -------------------------------------------------------------------------------
def test_known_category_takes_its_row_and_fixed_modes_ignore_it() -> None:
    s = Settings()
    fashion = route(Mode.auto, s, category="fashion")
    food = route(Mode.auto, s, category="food")
    assert fashion.source == "known" and fashion.weights == policy("fashion", s)
    assert fashion.weights["image"] > fashion.weights["text"]
    assert food.weights == policy("*", s) and food.weights["text"] > food.weights["image"]
    assert route(Mode.image, s, category="food").weights == {"image": 1.0, "text": 0.0}
    assert route(Mode.hybrid, s, category="fashion").weights == {"image": 0.5, "text": 0.5}


def test_an_estimate_blends_the_rows_by_probability() -> None:
    s = Settings(route_weights={"fashion": {"image": 1.0, "text": 0.0}, "*": {"image": 0.0, "text": 1.0}})
    r = route(Mode.auto, s, category="fashion", category_estimated=True, estimates=[("fashion", 0.6), ("food", 0.4)])
    assert r.source == "estimated" and (r.category, r.probability) == ("fashion", 0.6)
    assert r.weights == pytest.approx({"image": 0.6, "text": 0.4})
    assert blend([("food", 0.98), ("fashion", 0.02)], s) == pytest.approx({"image": 0.02, "text": 0.98})


# --- through the app --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(ingested: Ingested) -> Iterator[TestClient]:
    with TestClient(create_app(ingested.settings, embedders=ingested.embedders)) as c:
        yield c


@pytest.mark.weights
@pytest.mark.catalog
def test_auto_leans_on_images_for_fashion_and_on_text_for_food(client: TestClient, ingested: Ingested) -> None:
    for category, lean in (("fashion", "image"), ("food", "text")):
        row = first(ingested.good, category)
        body = client.get(f"/v1/products/{row.product_id}/similar", params={"k": 5}).json()
        other = "text" if lean == "image" else "image"
        assert body["route"]["source"] == "known" and body["route"]["category"] == category
        assert body["weights"][lean] > body["weights"][other]


@pytest.mark.weights
@pytest.mark.catalog
def test_weights_one_and_zero_reproduce_the_image_ranking(client: TestClient, ingested: Ingested) -> None:
    store = client.app.state.services.store  # type: ignore[attr-defined]
    image_only = Settings(**{**ingested.settings.model_dump(), "route_weights": {"*": {"image": 1.0, "text": 0.0}}})
    row = first(ingested.good, "food")
    for fusion in Fusion:
        opts = SimilarOptions(k=8, mode=Mode.auto, fusion=fusion)
        routed = similar_products(store, row.product_id, image_only, opts)
        plain = similar_products(store, row.product_id, image_only, SimilarOptions(k=8, mode=Mode.image))
        assert_same_ranking(routed.hits, plain.hits)
    # and through the fused query itself, with the text list present but weighted 0
    point = store.get(row.product_id, with_vectors=True)
    only = SearchFilter(exclude_product_ids=(row.product_id,))
    fused = store.search(point.vectors, {"image": 1.0, "text": 0.0}, 8, only, Fusion.wsum)
    plain_hits = store.search({"image": point.vectors["image"]}, {"image": 1.0}, 8, only)
    assert_same_ranking(fused, plain_hits)


def assert_same_ranking(hits: list[Hit], image_hits: list[Hit]) -> None:
    """The same products in the image ranking's order, up to exact ties: two products with the same photo
    (the API tests store such a copy) have the same cosine, and a fused query may break the tie either way."""
    cosine = {h.product.product_id: round(h.score, 5) for h in image_hits}
    ids = [h.product.product_id for h in hits]
    assert sorted(ids) == sorted(cosine)
    assert [cosine[i] for i in ids] == [round(h.score, 5) for h in image_hits]


@pytest.mark.weights
@pytest.mark.catalog
def test_mode_joint_before_any_rebuild_answers_409_saying_why(client: TestClient, ingested: Ingested) -> None:
    row = first(ingested.good, "home")
    r = client.get(f"/v1/products/{row.product_id}/similar", params={"mode": "joint"})
    assert r.status_code == 409
    assert "joint" in r.json()["detail"] and "rebuild" in r.json()["detail"]


@pytest.mark.weights
@pytest.mark.catalog
@pytest.mark.parametrize("mode", MODES)
def test_filters_hold_in_every_mode(client: TestClient, ingested: Ingested, mode: str) -> None:
    row = first(ingested.good, "home")
    priced = [r for r in ingested.good if r.price]
    low, high = sorted(float(r.price) for r in priced)[len(priced) // 4], max(float(r.price) for r in priced)
    excluded = [r.product_id for r in priced[:2]]
    params: dict[str, str | int | float | list[str]] = {
        "k": 50,
        "mode": mode,
        "price_min": low,
        "price_max": high,
        "exclude": excluded,
        "max_per_shop": 1,
    }
    r = client.get(f"/v1/products/{row.product_id}/similar", params=params)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    allowed = {
        x.product_id
        for x in ingested.good
        if x.price and low <= float(x.price) <= high and x.product_id not in excluded and x.product_id != row.product_id
    }
    assert items and {m["product_id"] for m in items} <= allowed
    shops = [m["shop_id"] for m in items]
    assert len(shops) == len(set(shops))  # max_per_shop=1
    # every allowed shop is represented: the cap drops extra products, not shops
    assert set(shops) == {x.shop_id for x in ingested.good if x.product_id in allowed}

    fashion = client.get(
        f"/v1/products/{row.product_id}/similar", params={"k": 50, "mode": mode, "category": "fashion"}
    ).json()["items"]
    assert fashion and {m["category"] for m in fashion} == {"fashion"}


@pytest.mark.weights
@pytest.mark.catalog
@pytest.mark.parametrize("fusion", FUSIONS)
def test_explain_scores_add_up_to_the_fused_score(client: TestClient, ingested: Ingested, fusion: str) -> None:
    row = first(ingested.good, "cosmetics")
    params: dict[str, str | int] = {"k": 10, "mode": "hybrid", "fusion": fusion, "explain": "true"}
    body = client.get(f"/v1/products/{row.product_id}/similar", params=params).json()
    assert body["fusion"] == fusion and len(body["items"]) == 10
    store = client.app.state.services.store  # type: ignore[attr-defined]
    query = store.get(row.product_id, with_vectors=True).vectors
    for item in body["items"]:
        e = item["explain"]
        assert e["fused_score"] == item["score"]
        assert sum(e["contributions"].values()) == pytest.approx(e["fused_score"], abs=1e-4)
        stored = store.get(item["product_id"], with_vectors=True).vectors
        assert e["image_score"] == pytest.approx(float(np.dot(stored["image"], query["image"])), abs=1e-4)
        assert e["text_score"] == pytest.approx(float(np.dot(stored["text"], query["text"])), abs=1e-4)
        if fusion == "wsum":
            assert e["contributions"]["image"] == pytest.approx(0.5 * e["image_score"], abs=1e-4)


@pytest.mark.weights
@pytest.mark.catalog
def test_categorize_a_text_a_photo_and_a_stored_product(client: TestClient, ingested: Ingested) -> None:
    fashion = first(ingested.good, "fashion")
    food = first(ingested.good, "food")
    photo = (ingested.catalog / fashion.image).read_bytes()
    by_photo = client.post("/v1/categorize", files={"file": ("p.jpg", photo, "image/jpeg")})
    assert by_photo.status_code == 200, by_photo.text
    assert by_photo.json()["used"] == ["image"] and by_photo.json()["categories"][0]["category"] == "fashion"
    by_text = client.post("/v1/categorize", data={"text": food.text}).json()
    assert by_text["used"] == ["text"] and by_text["categories"][0]["category"] == "food"
    by_id = client.post("/v1/categorize", data={"product_id": food.product_id}).json()
    probabilities = [c["probability"] for c in by_id["categories"]]
    assert by_id["used"] == ["image", "text"] and by_id["categories"][0]["category"] == "food"
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
    assert client.post("/v1/categorize", data={"text": "   "}).status_code == 422
    assert client.post("/v1/categorize", data={"product_id": "no-such"}).status_code == 404


@pytest.mark.weights
@pytest.mark.catalog
def test_a_product_sent_without_category_gets_an_estimate_marked_as_such(
    client: TestClient, ingested: Ingested
) -> None:
    src = first(ingested.good, "fashion")
    body = {"shop_id": "s", "title": src.title, "image_path": src.image}
    r = client.put("/v1/products/no-category", json=body)
    assert r.status_code == 201, r.text
    stored = client.get("/v1/products/no-category").json()
    assert stored["category"] == "fashion" and stored["category_estimated"] is True
    sim = client.get("/v1/products/no-category/similar", params={"k": 3}).json()
    assert sim["route"]["source"] == "estimated" and sim["route"]["estimates"][0]["category"] == "fashion"
    assert sim["weights"]["image"] > sim["weights"]["text"]
    # a shop-given category is never overridden
    given = client.put("/v1/products/with-category", json=body | {"category": "home"}).json()
    assert given["category"] == "home" and given["category_estimated"] is False
    client.delete("/v1/products/no-category")
    client.delete("/v1/products/with-category")
