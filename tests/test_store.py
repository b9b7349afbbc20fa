"""The store's behaviour, the same for both engines: Qdrant Edge in-process and qdrant-client's local mode.

Every test taking ``settings`` (or ``store``, ``filled``) runs once per engine, so the two cannot drift.
Vectors here are random unit vectors (the store does not care where they come from); the expected
rankings are computed with numpy, never written down. Engine-specific behaviour: ``test_store_edge.py``.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from niteru.products import Product, point_id, utc_now
from niteru.settings import Settings
from niteru.store import (
    Fusion,
    ProductPoint,
    ProductStore,
    SearchFilter,
    StoreSchemaError,
    StoreUnavailableError,
    open_store,
)
from niteru.store.edge import EdgeProductStore
from niteru.store.plan import version_at_most
from niteru.store.qdrant import QdrantProductStore
from niteru.store.records import to_row

ENGINES = ("edge", "qdrant")
DIMS = {"image": 16, "text": 8}
CATEGORIES = ("fashion", "food", "cosmetics")


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=n).astype(np.float32)
    return v / np.linalg.norm(v)


def make_point(i: int, version: int, rng: np.random.Generator, title: str | None = None) -> ProductPoint:
    product = Product(
        product_id=f"p-{i}",
        shop_id=f"shop-{i % 4}",
        title=title or f"product {i}",
        category=CATEGORIES[i % 3],
        subcategory="x",
        image=f"images/p-{i}.jpg",
        image_sha256="0" * 64,
        image_version=version,
        image_model_version="img-test",
        text_model_version="txt-test",
        content_hash=f"hash-{i}-{version}",
        updated_at=utc_now(),
    )
    return ProductPoint(product, {"image": unit(rng, DIMS["image"]), "text": unit(rng, DIMS["text"])})


@pytest.fixture(params=ENGINES)
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return Settings(data_dir=tmp_path, store_engine=request.param)


@pytest.fixture
def store(settings: Settings) -> Iterator[ProductStore]:
    s = open_store(settings)
    s.ensure_collection(DIMS)
    yield s
    s.close()


@pytest.fixture
def filled(store: ProductStore) -> tuple[ProductStore, list[ProductPoint]]:
    rng = np.random.default_rng(7)
    points = [make_point(i, 100, rng) for i in range(30)]
    assert store.upsert(points).written == [p.product.product_id for p in points]
    return store, points


def test_point_ids_are_deterministic_uuid5() -> None:
    a = point_id("myn-10002")
    assert a == point_id("myn-10002") != point_id("myn-10003")
    assert uuid.UUID(a).version == 5


def test_open_store_picks_the_engine(store: ProductStore, settings: Settings) -> None:
    kind = EdgeProductStore if settings.store_engine == "edge" else QdrantProductStore
    assert isinstance(store, kind)
    assert store.info()["engine"] == ("edge" if settings.store_engine == "edge" else "qdrant-embedded")
    other = "qdrant" if settings.store_engine == "edge" else "edge"
    assert settings.model_copy(update={"store_engine": other}).store_path != settings.store_path


def test_collection_is_versioned_behind_the_alias(store: ProductStore, settings: Settings) -> None:
    current = store.current_version()
    assert current.startswith(f"{settings.store_alias}-")
    assert store.versions() == [current] and store.info()["collection"] == current


def test_reopen_keeps_the_collection_and_refuses_other_sizes(settings: Settings) -> None:
    with open_store(settings) as first:
        first.ensure_collection(DIMS)
        first.upsert([make_point(1, 1, np.random.default_rng(0))])
        name = first.info()["collection"]
    with open_store(settings) as again:
        again.ensure_collection(DIMS)
        assert again.info()["collection"] == name
        assert again.count() == 1
        with pytest.raises(StoreSchemaError, match="text"):
            again.ensure_collection({"image": 16, "text": 9})


def test_upsert_is_idempotent_and_get_round_trips(filled: tuple[ProductStore, list[ProductPoint]]) -> None:
    store, points = filled
    assert store.upsert(points[:5]).written == [p.product.product_id for p in points[:5]]
    assert store.count() == len(points)
    got = store.get("p-3", with_vectors=True)
    assert got is not None
    assert got.product == points[3].product
    np.testing.assert_allclose(got.vectors["image"], points[3].vectors["image"], atol=1e-6)
    assert store.get("no-such-product") is None
    assert store.content_hashes(["p-1", "nope"]) == {"p-1": points[1].product.content_hash}


def test_an_older_image_never_overwrites_a_newer_one(filled: tuple[ProductStore, list[ProductPoint]]) -> None:
    store, _ = filled
    rng = np.random.default_rng(1)
    newer = make_point(0, 500, rng, title="newer")
    assert store.upsert([newer]).written == ["p-0"]
    # A mixed batch: p-0 older than stored (stale), p-1 and p-3 newer (written), p-99 new (inserted). The
    # batch's lowest version (1) is below what p-1 and p-3 have stored, so they take a conditional call each.
    batch = [make_point(0, 200, rng, "older"), make_point(1, 150, rng), make_point(99, 1, rng), make_point(3, 600, rng)]
    outcome = store.upsert(batch)
    assert sorted(outcome.written) == ["p-1", "p-3", "p-99"] and outcome.stale == ["p-0"]
    stored = store.get("p-0")
    assert stored is not None and stored.product.title == "newer" and stored.product.image_version == 500
    # The store's own condition holds even when the caller's pre-check is bypassed.
    store._write(store.collection, [to_row(make_point(0, 300, rng, "sneaky"))], version_at_most(300))
    stored = store.get("p-0")
    assert stored is not None and stored.product.title == "newer"


def brute_force(points: list[ProductPoint], query: np.ndarray, name: str, keep: list[bool]) -> list[str]:
    scores = np.array([float(p.vectors[name] @ query) for p in points])
    order = np.argsort(-scores, kind="stable")
    return [points[i].product.product_id for i in order if keep[i]]


def test_single_vector_search_matches_brute_force(filled: tuple[ProductStore, list[ProductPoint]]) -> None:
    store, points = filled
    query = points[4].vectors
    for name in ("image", "text"):
        hits = store.search(query, {name: 1.0}, 5)
        assert [h.product.product_id for h in hits] == brute_force(points, query[name], name, [True] * 30)[:5]
        assert hits[0].product.product_id == "p-4" and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_filters_and_exclusions(filled: tuple[ProductStore, list[ProductPoint]]) -> None:
    store, points = filled
    query = points[4].vectors
    f = SearchFilter(category="food", exclude_shop_id="shop-0", exclude_product_ids=("p-4",))
    keep = [
        p.product.category == "food" and p.product.shop_id != "shop-0" and p.product.product_id != "p-4" for p in points
    ]
    hits = store.search(query, {"image": 1.0}, 30, f)
    assert [h.product.product_id for h in hits] == brute_force(points, query["image"], "image", keep)
    assert hits and all(h.product.category == "food" and h.product.shop_id != "shop-0" for h in hits)


def test_excluding_only_the_query_product(filled: tuple[ProductStore, list[ProductPoint]]) -> None:
    store, points = filled
    query = points[4].vectors
    only_self = SearchFilter(exclude_product_ids=("p-4",))
    keep = [p.product.product_id != "p-4" for p in points]
    hits = store.search(query, {"text": 1.0}, 6, only_self)
    assert [h.product.product_id for h in hits] == brute_force(points, query["text"], "text", keep)[:6]
    fused = store.search(query, {"image": 1.0, "text": 1.0}, 6, only_self)
    assert len(fused) == 6 and "p-4" not in [h.product.product_id for h in fused]


def test_fusion_ranks_by_weighted_reciprocal_rank(filled: tuple[ProductStore, list[ProductPoint]]) -> None:
    store, points = filled
    query = points[7].vectors
    weights = {"image": 1.0, "text": 0.3}
    hits = store.search(query, weights, 10, fusion=Fusion.wrrf)
    every = [True] * len(points)
    ranks = {n: brute_force(points, query[n], n, every) for n in weights}
    k = 60  # settings.rrf_k

    def rrf(pid: str) -> float:
        return sum(1 / ((ranks[n].index(pid) + 1) / w + k - 1) for n, w in weights.items())

    expected = sorted((p.product.product_id for p in points), key=lambda pid: -rrf(pid))[:10]
    assert [h.product.product_id for h in hits] == expected
    assert [h.score for h in hits] == pytest.approx([rrf(pid) for pid in expected], rel=1e-6)
    with pytest.raises(ValueError, match="no vector"):
        store.search(query, {"image": 0.0, "text": 0.0}, 5)


def test_weighted_sum_fusion_is_the_normalised_sum_of_cosines(filled: tuple[ProductStore, list[ProductPoint]]) -> None:
    """30 points and 50 candidates per list: every point is a candidate, so the ranking is global."""
    store, points = filled
    query = points[7].vectors
    weights = {"image": 1.0, "text": 0.3}
    hits = store.search(query, weights, 10, fusion=Fusion.wsum)

    def fused(p: ProductPoint) -> float:
        return sum(w / 1.3 * float(p.vectors[n] @ query[n]) for n, w in weights.items())

    expected = sorted(points, key=lambda p: -fused(p))[:10]
    assert [h.product.product_id for h in hits] == [p.product.product_id for p in expected]
    assert [h.score for h in hits] == pytest.approx([fused(p) for p in expected], abs=1e-5)


@pytest.mark.parametrize("fusion", list(Fusion))
def test_fusion_with_weights_one_and_zero_is_the_image_ranking(
    filled: tuple[ProductStore, list[ProductPoint]], fusion: Fusion
) -> None:
    store, points = filled
    query = points[3].vectors
    image_only = store.search({"image": query["image"]}, {"image": 1.0}, 8)
    fused = store.search(query, {"image": 1.0, "text": 0.0}, 8, fusion=fusion)
    assert [h.product.product_id for h in fused] == [h.product.product_id for h in image_only]


@pytest.mark.parametrize("fusion", list(Fusion))
def test_filters_hold_under_every_fusion(filled: tuple[ProductStore, list[ProductPoint]], fusion: Fusion) -> None:
    store, points = filled
    query = points[3].vectors
    f = SearchFilter(category="food", exclude_shop_id="shop-1", exclude_product_ids=("p-3", "p-5"))
    hits = store.search(query, {"image": 0.6, "text": 0.4}, 30, f, fusion)
    allowed = {
        p.product.product_id
        for p in points
        if p.product.category == "food" and p.product.shop_id != "shop-1" and p.product.product_id not in ("p-3", "p-5")
    }
    assert {h.product.product_id for h in hits} == allowed


def test_scroll_returns_every_product_once_with_its_vectors(filled: tuple[ProductStore, list[ProductPoint]]) -> None:
    store, points = filled
    seen = [p for batch in store.scroll(batch_size=7) for p in batch]
    assert sorted(p.product.product_id for p in seen) == sorted(p.product.product_id for p in points)
    by_id = {p.product.product_id: p for p in points}
    for p in seen:
        np.testing.assert_allclose(p.vectors["image"], by_id[p.product.product_id].vectors["image"], atol=1e-6)


def test_delete(filled: tuple[ProductStore, list[ProductPoint]]) -> None:
    store, points = filled
    assert store.delete("p-5") is True
    assert store.delete("p-5") is False
    assert store.get("p-5") is None and store.count() == len(points) - 1


def test_the_embedded_store_allows_one_client_at_a_time(store: ProductStore, settings: Settings) -> None:
    with pytest.raises(StoreUnavailableError, match="another process"):
        open_store(settings)


def test_an_unreachable_server_is_unavailable(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A server URL means the server, whatever the engine setting says.
    settings = Settings(data_dir=tmp_path, store_engine="edge", qdrant_url=f"http://127.0.0.1:{port}", qdrant_timeout=1)
    assert settings.store_engine == "qdrant"
    with open_store(settings) as store:
        assert isinstance(store, QdrantProductStore)
        with pytest.raises(StoreUnavailableError, match="unreachable"):
            store.ping()
        with pytest.raises(StoreUnavailableError):
            store.ensure_collection(DIMS)
