"""Similar products, search and categorize through the real app on both store engines, with the fake
embedders (fast tier). Expected rankings come from the fake embedders and numpy, never from the store.

Nothing here writes: every test sees the products the fixture stored.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import numpy as np
import pytest

from niteru.products import product_text
from tests.fast_fixtures import SYNTHETIC, FastApi, photo

FUSIONS = ("wsum", "wrrf", "rrf", "dbsf")

pytestmark = pytest.mark.catalog  # real catalog-dev rows, read in place


def first(api: FastApi, category: str) -> str:
    return next(r.product_id for r in api.rows if r.category == category)


def stored_vectors(api: FastApi, kind: str) -> dict[str, np.ndarray]:
    """The oracle: each stored product's vector of ``kind``, computed here with the fakes."""
    if kind == "image":
        out = {r.product_id: api.image_vector(r) for r in api.rows}
        out |= {pid: api.embedders.image.embed_one(photo(colour)) for pid, (*_, colour) in SYNTHETIC.items()}
        return out
    out = {r.product_id: api.text_vector(product_text(r.title, r.description)) for r in api.rows}
    return out | {pid: api.text_vector(f"Synthetic {pid} cushion") for pid in SYNTHETIC}


def similar(api: FastApi, product_id: str, **params: Any) -> dict[str, Any]:
    r = api.client.get(f"/v1/products/{product_id}/similar", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize("mode", ["image", "text"])
def test_single_vector_modes_are_the_exact_nearest_neighbours(fast_api: FastApi, mode: str) -> None:
    query = first(fast_api, "fashion")
    vectors = stored_vectors(fast_api, mode)
    cos = {pid: float(v @ vectors[query]) for pid, v in vectors.items() if pid != query}
    body = similar(fast_api, query, k=7, mode=mode)
    ids = [m["product_id"] for m in body["items"]]
    scores = [m["score"] for m in body["items"]]
    assert body["mode"] == mode and body["route"]["source"] == "mode"
    assert len(ids) == 7 and query not in ids and len(set(ids)) == 7
    # the k best cosines, each with its own product (equal scores may come in either order)
    assert scores == pytest.approx(sorted(cos.values(), reverse=True)[:7], abs=1e-4)
    assert [cos[pid] for pid in ids] == pytest.approx(scores, abs=1e-4)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_hybrid_in_each_fusion_explains_its_scores(fast_api: FastApi, fusion: str) -> None:
    query = first(fast_api, "food")
    image, text = stored_vectors(fast_api, "image"), stored_vectors(fast_api, "text")
    body = similar(fast_api, query, k=6, mode="hybrid", fusion=fusion, explain=True)
    assert body["fusion"] == fusion and body["weights"] == {"image": 0.5, "text": 0.5}
    items = body["items"]
    assert len(items) == 6 and query not in {m["product_id"] for m in items}
    scores = [m["score"] for m in items]
    assert scores == sorted(scores, reverse=True)
    for m in items:
        ex = m["explain"]
        assert ex["fused_score"] == pytest.approx(m["score"], abs=1e-5)
        assert sum(ex["contributions"].values()) == pytest.approx(m["score"], abs=1e-4)
        pid = m["product_id"]
        # each per-vector score a query asked for is that vector's cosine, whichever the fusion
        assert ex["image_score"] == pytest.approx(float(image[pid] @ image[query]), abs=1e-4)
        assert ex["text_score"] == pytest.approx(float(text[pid] @ text[query]), abs=1e-4)
        if fusion == "wsum":
            assert m["score"] == pytest.approx(0.5 * ex["image_score"] + 0.5 * ex["text_score"], abs=1e-4)


def test_auto_routes_by_the_known_category_or_by_the_estimate(fast_api: FastApi) -> None:
    fashion = similar(fast_api, first(fast_api, "fashion"))
    food = similar(fast_api, first(fast_api, "food"))
    assert fashion["route"]["source"] == food["route"]["source"] == "known"
    assert fashion["weights"]["image"] > fashion["weights"]["text"]
    assert food["weights"]["text"] > food["weights"]["image"]
    estimated = similar(fast_api, first(fast_api, "food"), estimate_category=True)["route"]
    assert estimated["source"] == "estimated" and estimated["estimates"]
    probabilities = [e["probability"] for e in estimated["estimates"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert estimated["category"] == estimated["estimates"][0]["category"]


def test_filters_hold(fast_api: FastApi) -> None:
    query = first(fast_api, "fashion")
    food = similar(fast_api, query, k=50, category="food")["items"]
    assert len(food) == sum(r.category == "food" for r in fast_api.rows)
    assert {m["category"] for m in food} == {"food"}
    subcategory = next(r.subcategory for r in fast_api.rows if r.product_id != query and r.subcategory)
    sub = similar(fast_api, query, k=50, subcategory=subcategory)["items"]
    expected = {r.product_id for r in fast_api.rows if r.subcategory == subcategory} - {query}
    assert {m["product_id"] for m in sub} == expected
    shop = similar(fast_api, query, k=50, shop_id="shop-syn")["items"]
    assert sorted(m["product_id"] for m in shop) == ["syn-red-1", "syn-red-2"]
    priced = similar(fast_api, query, k=50, mode="image", price_min=15, price_max=30)["items"]
    assert priced and all(m["price"] is not None and 15 <= m["price"] <= 30 for m in priced)
    assert {"syn-red-2", "syn-blue"} <= {m["product_id"] for m in priced}
    bad = fast_api.client.get(f"/v1/products/{query}/similar", params={"price_min": 5, "price_max": 1})
    assert bad.status_code == 422


def test_same_shop_shop_cap_and_exclusions(fast_api: FastApi) -> None:
    client_items = similar(fast_api, "syn-red-1", k=50, mode="image")["items"]
    assert "syn-red-2" in {m["product_id"] for m in client_items}
    others = similar(fast_api, "syn-red-1", k=50, mode="image", exclude_same_shop=True)["items"]
    assert others and all(m["shop_id"] != "shop-syn" for m in others)

    capped = similar(fast_api, first(fast_api, "food"), k=10, mode="text", max_per_shop=1)["items"]
    shops = Counter(m["shop_id"] for m in capped)
    assert capped and max(shops.values()) == 1
    uncapped = similar(fast_api, first(fast_api, "food"), k=10, mode="text")["items"]
    assert max(Counter(m["shop_id"] for m in uncapped).values()) > 1  # the cap had something to do

    top = [m["product_id"] for m in uncapped[:3]]
    without = similar(fast_api, first(fast_api, "food"), k=10, mode="text", exclude=top)["items"]
    assert not set(top) & {m["product_id"] for m in without}
    # the rest of the ranking moves up (by score: equal scores may come in either order)
    assert [m["score"] for m in without[:3]] == pytest.approx([m["score"] for m in uncapped[3:6]], abs=1e-5)


@pytest.mark.parametrize(
    "params",
    [{"k": 0}, {"k": 10_000}, {"mode": "colour"}, {"fusion": "max"}]
    + [{"diversity": d} for d in (-0.1, 1.5, "nan", "inf", "some")],
)
def test_bad_similar_options_are_422(fast_api: FastApi, params: dict[str, Any]) -> None:
    r = fast_api.client.get(f"/v1/products/{first(fast_api, 'home')}/similar", params=params)
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("mode", ["image", "auto"])
def test_diversity_trades_similarity_for_variety(fast_api: FastApi, mode: str) -> None:
    query = first(fast_api, "fashion")
    vectors = stored_vectors(fast_api, "image")
    plain = similar(fast_api, query, k=10, mode=mode)["items"]
    assert similar(fast_api, query, k=10, mode=mode, diversity=0)["items"] == plain

    def alike(items: list[dict[str, Any]]) -> float:
        """The mean image cosine between the results: how much the page repeats itself."""
        v = np.array([vectors[m["product_id"]] for m in items])
        sims = v @ v.T
        return float((sims.sum() - np.trace(sims)) / (len(v) * (len(v) - 1)))

    varied = similar(fast_api, query, k=10, mode=mode, diversity=0.5)["items"]
    ids = [m["product_id"] for m in varied]
    assert len(ids) == 10 and query not in ids and len(set(ids)) == 10
    assert ids[0] == plain[0]["product_id"]  # MMR picks the most similar first
    assert alike(varied) < alike(plain)
    # what each item scores is its similarity as before, whatever place MMR gives it
    cos = {pid: float(v @ vectors[query]) for pid, v in vectors.items()}
    if mode == "image":
        assert [m["score"] for m in varied] == pytest.approx([cos[pid] for pid in ids], abs=1e-4)


def test_search_routes_take_a_diversity(fast_api: FastApi) -> None:
    row = next(r for r in fast_api.rows if r.category == "home")
    data = (fast_api.settings.catalog_dir / row.image).read_bytes()
    client = fast_api.client
    upload = {"file": ("p.jpg", data, "image/jpeg")}
    for diversity, status in ((0.4, 200), (1.5, 422)):
        r = client.post("/v1/search/image", files=upload, params={"k": 5, "diversity": diversity})
        assert r.status_code == status, r.text
        text = {"text": row.title, "k": 5, "diversity": diversity}
        assert client.post("/v1/search/text", json=text).status_code == status
    assert r.json()["detail"][0]["loc"] == ["query", "diversity"]
    varied = client.post("/v1/search/image", files=upload, params={"k": 5, "diversity": 0.4}).json()["items"]
    assert varied[0]["product_id"] == row.product_id and len(varied) == 5


def test_similar_runs_on_the_event_loop_for_a_store_that_holds_the_gil(
    fast_api: FastApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edge's calls hold the GIL: a worker thread would add hand-offs and no parallelism. A store whose
    calls wait on the network (qdrant-client) keeps its worker thread, or one request would stall the rest."""
    services = fast_api.client.app.state.services  # type: ignore[attr-defined]
    real, where = services.similar, []

    def similar_where(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
            where.append("event loop")
        except RuntimeError:
            where.append("worker thread")
        return real(*args)

    monkeypatch.setattr(services, "similar", similar_where)
    body = similar(fast_api, first(fast_api, "food"), k=3)
    assert len(body["items"]) == 3
    assert services.store.holds_gil is (fast_api.engine == "edge")
    assert where == ["event loop" if fast_api.engine == "edge" else "worker thread"]
    # A long request (diversity, a large page) keeps its worker thread, so that it holds up no other.
    where.clear()
    similar(fast_api, first(fast_api, "food"), k=3, diversity=0.3)
    similar(fast_api, first(fast_api, "food"), k=51)
    assert where == ["worker thread", "worker thread"]


def test_similar_of_an_unknown_product_is_404(fast_api: FastApi) -> None:
    assert fast_api.client.get("/v1/products/nobody/similar").status_code == 404


def test_search_by_photo_finds_the_product_and_filters(fast_api: FastApi) -> None:
    row = next(r for r in fast_api.rows if r.category == "home")
    data = (fast_api.settings.catalog_dir / row.image).read_bytes()
    client = fast_api.client
    r = client.post("/v1/search/image", files={"file": ("p.jpg", data, "image/jpeg")}, params={"k": 3})
    assert r.status_code == 200, r.text
    top = r.json()["items"][0]
    assert top["product_id"] == row.product_id and top["score"] == pytest.approx(1.0, abs=1e-4)
    only = client.post(
        "/v1/search/image", files={"file": ("p.jpg", data, "image/jpeg")}, params={"k": 5, "category": "food"}
    ).json()["items"]
    assert len(only) == 5 and {m["category"] for m in only} == {"food"}
    bad = client.post("/v1/search/image", files={"file": ("p.jpg", b"not an image", "image/jpeg")})
    assert bad.status_code == 415


def test_search_by_text(fast_api: FastApi) -> None:
    row = next(r for r in fast_api.rows if r.category == "electronics")
    client = fast_api.client
    text = product_text(row.title, row.description)
    r = client.post("/v1/search/text", json={"text": text, "k": 3})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert items[0]["product_id"] == row.product_id
    # The score is the text cosine plus the BM25 title bonus (search_text_lexical_weight x BM25 of the query
    # over the result's title): the product's own text has cosine 1 and its title shares every title word.
    query = fast_api.text_vector(text)
    for item in items:
        stored = fast_api.text_vector(product_text(item["title"], item.get("description") or ""))
        assert item["score"] >= float(query @ stored) - 1e-4
    bonus = items[0]["score"] - 1.0
    assert fast_api.settings.search_text_lexical_weight > 0 and bonus > 0.05
    assert [m["score"] for m in items] == sorted((m["score"] for m in items), reverse=True)
    food = client.post("/v1/search/text", json={"text": row.title, "k": 4, "category": "food"}).json()["items"]
    assert len(food) == 4 and {m["category"] for m in food} == {"food"}
    assert client.post("/v1/search/text", json={"text": "!!! ???"}).status_code == 422  # no word
    assert client.post("/v1/search/text", json={"text": "   "}).status_code == 422


def test_categorize_from_text_photo_or_stored_product(fast_api: FastApi) -> None:
    client = fast_api.client
    row = next(r for r in fast_api.rows if r.category == "cosmetics")
    known = {r.category for r in fast_api.rows}

    def check(r: Any, used: list[str]) -> None:
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["used"] == used and body["model_version"]
        probabilities = [c["probability"] for c in body["categories"]]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
        assert {c["category"] for c in body["categories"]} <= known

    check(client.post("/v1/categorize", data={"text": row.title}), ["text"])
    data = (fast_api.settings.catalog_dir / row.image).read_bytes()
    check(client.post("/v1/categorize", files={"file": ("p.jpg", data, "image/jpeg")}), ["image"])
    check(client.post("/v1/categorize", data={"product_id": row.product_id}), ["image", "text"])
    assert client.post("/v1/categorize", data={}).status_code == 422
    assert client.post("/v1/categorize", data={"text": "!!! ???"}).status_code == 422
    assert client.post("/v1/categorize", data={"product_id": "nobody"}).status_code == 404
