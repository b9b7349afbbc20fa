"""The routing fit (niteru/route_fit.py, route_lists.py, route_table.py) on real stores of synthetic products.

Two categories whose subcategories are told apart by one modality each: in ``looks`` the photos cluster by
subcategory and the texts are noise, in ``words`` the other way round. A third, ``tiny``, has too few
products for a fit of its own. Vectors are random (seeded); what the fit must pick follows from how they
were made, and the numpy emulation of the query is checked against the store's own answers for every rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from niteru.catalog import CatalogRow
from niteru.fusion import Fusion
from niteru.products import Product, utc_now
from niteru.route_fit import fit_routes, held_out_choice
from niteru.route_grid import Choice, FitData, grid, in_validation
from niteru.route_lists import candidate_lists, fused
from niteru.route_table import drop_route_table, load_route_table, save_route_table
from niteru.routing import DEFAULT_WEIGHTS, Mode, route
from niteru.settings import Settings
from niteru.store import ProductPoint, ProductStore, SearchFilter, open_store
from tests.fakes import fake_embedders
from tests.fast_fixtures import row_body

# Fits on synthetic stores of both engines (about 5 s): the full suite, not the fast tier.
pytestmark = pytest.mark.slow

DIMS = {"image": 32, "text": 24}
SUBCATEGORIES = 4
PER_SUBCATEGORY = 30
LEADS = {"looks": "image", "words": "text"}


def unit(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = (v / np.linalg.norm(v)).astype(np.float32)
    return out


def catalog(seed: int = 3) -> list[ProductPoint]:
    """``looks`` and ``words``: 4 subcategories x 30 products each; ``tiny``: 6 products."""
    rng = np.random.default_rng(seed)
    points = []
    for category, lead in (*LEADS.items(), ("tiny", "image")):
        count = (SUBCATEGORIES, PER_SUBCATEGORY) if category != "tiny" else (2, 3)
        centres = {n: [rng.normal(size=d) for _ in range(count[0])] for n, d in DIMS.items()}
        for s in range(count[0]):
            for j in range(count[1]):
                vectors = {
                    n: unit(centres[n][s] + rng.normal(scale=0.6, size=d)) if n == lead else unit(rng.normal(size=d))
                    for n, d in DIMS.items()
                }
                points.append(ProductPoint(product(f"{category}-{s}-{j}", category, f"{category}-{s}"), vectors))
    return points


def product(pid: str, category: str, subcategory: str) -> Product:
    return Product(
        product_id=pid,
        shop_id="shop",
        title=pid,
        category=category,
        subcategory=subcategory,
        image=f"images/{pid}.jpg",
        image_sha256="0" * 64,
        image_version=1,
        image_model_version="img-test",
        text_model_version="txt-test",
        content_hash=pid,
        updated_at=utc_now(),
    )


@pytest.fixture(params=["edge", "qdrant"])
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    # Half the products are validation queries, so each big category has about 60, the tiny one about 3.
    # Float32 vectors: the fit's numpy query is exact search, which a quantized store only approximates
    # (how closely: tests/test_store_quantization.py).
    return Settings(
        data_dir=tmp_path, store_engine=request.param, route_fit_validation_share=0.5, quantization_image="none"
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[ProductStore]:
    s = open_store(settings)
    s.ensure_collection(DIMS)
    s.upsert(catalog())
    yield s
    s.close()


def test_the_fit_leans_each_category_on_the_modality_that_tells_it_apart(
    store: ProductStore, settings: Settings
) -> None:
    table = fit_routes(store, settings, store.current_version())
    for category, lead in LEADS.items():
        row = table.rows[category]
        other = "text" if lead == "image" else "image"
        assert row.basis == "fitted"
        assert row.weights[lead] > row.weights[other], (category, row)
        # its choice held on the half of its queries it was not picked on
        assert row.held_out["row"] >= row.held_out["global"]
        assert row.single[lead] > row.single[other] + 0.3  # the catalog is what the test says it is
    assert table.info["validation_queries"] == sum(r.queries for r in table.rows.values())
    # without variants (no look-alike check) no lexical axis: every weight vector times every fusion
    assert table.info["lexical_weights"] == []
    assert table.info["grid"] == len(Fusion) * len(grid(2, settings.route_fit_step))


def test_a_category_with_too_few_queries_takes_the_global_row(store: ProductStore, settings: Settings) -> None:
    table = fit_routes(store, settings, store.current_version())
    tiny = table.rows["tiny"]
    assert 0 < tiny.queries < settings.route_fit_min_queries
    assert tiny.basis == "global: too few queries"
    assert (tiny.weights, tiny.fusion) == (table.global_row.weights, table.global_row.fusion)
    # a category the fit never saw routes by the global row too
    assert table.row("sports") == table.global_row


def test_a_category_keeps_the_global_row_unless_its_choice_holds_on_held_out_queries() -> None:
    top = Choice(Fusion.wsum, (0.5, 0.5))
    lucky = Choice(Fusion.wsum, (0.9, 0.1))  # best on the first half only
    steady = Choice(Fusion.wrrf, (0.2, 0.8))  # a little better everywhere
    first, second = np.array([True] * 4 + [False] * 4), np.array([False] * 4 + [True] * 4)
    scores = {
        top: np.array([0.5] * 8),
        lucky: np.array([0.9] * 4 + [0.3] * 4),
        steady: np.array([0.6] * 8),
    }
    choice, basis, check = held_out_choice(scores, first, second, top)
    assert (choice, basis, check) == (top, "global: not better on held-out", {"row": 0.3, "global": 0.5})
    scores[lucky] = np.array([0.55] * 8)  # now below steady on the first half
    assert held_out_choice(scores, first, second, top)[:2] == (steady, "fitted")
    # ties go to the global row
    scores[steady] = scores[lucky] = scores[top]
    assert held_out_choice(scores, first, second, top)[:2] == (top, "fitted")


def test_the_numpy_query_ranks_like_the_store(store: ProductStore, settings: Settings) -> None:
    """The emulation the fit scores with against the store's fused query, for every rule and a few routes."""
    points = [p for batch in store.scroll(batch_size=512, with_vectors=True) for p in batch]
    data = FitData.of(points)
    queries = np.arange(0, len(points), 17)
    lists = candidate_lists(data.vectors, queries, 10, ("image", "text"))
    for fusion in Fusion:
        for w in (0.0, 0.3, 0.8):
            weights = {"image": w, "text": 1 - w}
            hits, scores = fused(lists, weights, fusion, 10, settings.rrf_k)
            for q, row, row_scores in zip(queries, hits, scores, strict=True):
                pid = data.product_ids[q]
                asked = {n: v for n, v in points[q].vectors.items() if weights[n] > 0}
                only = SearchFilter(exclude_product_ids=(pid,))
                found = store.search(asked, weights, 10, only, fusion)
                assert [h.score for h in found] == pytest.approx(row_scores.tolist(), abs=1e-5), (fusion, w, pid)
                # the same products, but for the order of equal scores (rank fusions tie often)
                ours = {data.product_ids[i]: s for i, s in zip(row, row_scores, strict=True)}
                for h in found:
                    assert h.product.product_id in ours or any(abs(s - h.score) < 1e-5 for s in ours.values())


def test_the_table_round_trips_and_routes_auto_queries(store: ProductStore, settings: Settings) -> None:
    table = fit_routes(store, settings, store.current_version())
    save_route_table(settings, table)
    loaded = load_route_table(settings, store.current_version())
    assert loaded == table
    assert load_route_table(settings, "products-v999") is None
    drop_route_table(settings, "products-v999")  # none there: nothing happens
    looks = route(Mode.auto, settings, category="looks", fitted=loaded)
    assert (looks.table, looks.table_version, looks.basis) == ("fitted", table.version, "fitted")
    assert looks.weights == table.rows["looks"].weights and looks.fusion is table.rows["looks"].fusion
    # an estimated category blends the fitted rows
    mixed = route(
        Mode.auto,
        settings,
        category="looks",
        category_estimated=True,
        estimates=[("looks", 0.5), ("words", 0.5)],
        fitted=loaded,
    )
    looks_w, words_w = table.rows["looks"].weights, table.rows["words"].weights
    expect = {n: (looks_w.get(n, 0.0) + words_w.get(n, 0.0)) / 2 for n in looks_w | words_w}
    assert mixed.weights == pytest.approx(expect) and mixed.table == "fitted"
    assert route(Mode.hybrid, settings, category="looks", fitted=loaded).table is None
    drop_route_table(settings, store.current_version())
    assert load_route_table(settings, store.current_version()) is None


def test_the_override_setting_wins_and_without_a_fit_the_default_table_routes(
    store: ProductStore, settings: Settings
) -> None:
    table = fit_routes(store, settings, store.current_version())
    override = Settings(**{**settings.model_dump(), "route_weights": {"*": {"image": 0.9, "text": 0.1}}})
    r = route(Mode.auto, override, category="words", fitted=table)
    assert (r.table, r.weights, r.fusion, r.table_version) == ("override", {"image": 0.9, "text": 0.1}, None, None)
    d = route(Mode.auto, settings, category="fashion")
    assert (d.table, d.weights, d.fusion) == ("default", DEFAULT_WEIGHTS["fashion"], None)


def test_the_validation_split_is_seeded_by_product() -> None:
    s = Settings()
    ids = [f"p-{i}" for i in range(4000)]
    chosen = [in_validation(pid, s) for pid in ids]
    assert chosen == [in_validation(pid, s) for pid in ids]
    assert 0.17 < np.mean(chosen) < 0.23
    other = Settings(route_fit_seed=1)
    assert chosen != [in_validation(pid, other) for pid in ids]


@pytest.mark.catalog
def test_similar_says_where_its_route_came_from(catalog_dir: Path, fast_rows: list[CatalogRow], tmp_path: Path) -> None:
    """Through the app (fake embedders): the default table before any fit, the fitted one once the live
    collection has one (loaded at start-up like its text model), the override setting over both."""
    settings = Settings(
        data_dir=tmp_path,
        catalog_dir=catalog_dir,
        celery_broker_url="redis://127.0.0.1:1/0",
        metrics_broker_timeout=0.2,
        route_fit_validation_share=0.9,
        route_fit_min_queries=2,
    )
    embedders = fake_embedders(settings)
    query = next(r.product_id for r in fast_rows if r.category == "fashion")
    url = f"/v1/products/{query}/similar"

    def similar(s: Settings) -> dict[str, Any]:
        with TestClient(create_app(s, embedders=embedders)) as client:
            r = client.get(url, params={"k": 5, "explain": "true"})
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body

    with TestClient(create_app(settings, embedders=embedders)) as client:
        for r in fast_rows:
            assert client.put(f"/v1/products/{r.product_id}", json=row_body(r)).status_code == 201
    before = similar(settings)["route"]
    assert (before["table"], before["table_version"], before["basis"]) == ("default", None, None)
    assert before["weights"] == DEFAULT_WEIGHTS["fashion"]

    with open_store(settings) as store:
        table = fit_routes(store, settings, store.current_version())
    save_route_table(settings, table)
    body = similar(settings)
    fitted = table.row("fashion")
    assert body["route"]["table"] == "fitted" and body["route"]["table_version"] == table.version
    assert body["route"]["basis"] == fitted.basis
    assert body["weights"] == fitted.weights and body["fusion"] == fitted.fusion.value
    assert all(m["explain"] is not None for m in body["items"])

    override = Settings(**{**settings.model_dump(), "route_weights": {"*": {"image": 0.25, "text": 0.75}}})
    body = similar(override)
    assert body["route"]["table"] == "override" and body["route"]["table_version"] is None
    assert body["weights"] == {"image": 0.25, "text": 0.75} and body["fusion"] == settings.fusion.value


def test_variants_keep_the_fit_from_trading_a_relisting_for_the_label() -> None:
    """Text here is the subcategory itself (every product of one has the same text vector): text alone has
    perfect precision@10, but a re-listed product can no longer be told from its subcategory mates. With
    variants the fit keeps only routes that still find the original first."""
    from niteru.route_fit import fit_table
    from niteru.route_grid import FitData, Variants

    rng = np.random.default_rng(5)
    n, subs = 240, 4
    sub = np.arange(n) % subs

    def unit(m: np.ndarray) -> np.ndarray:
        return np.asarray(m / np.linalg.norm(m, axis=1, keepdims=True), np.float32)

    image = unit(rng.normal(size=(n, 32)))
    text = unit(np.eye(subs, 16)[sub])  # the same text vector for every product of a subcategory
    data = FitData(
        [f"p{i:03d}" for i in range(n)],
        ["looks" if s < 2 else "words" for s in sub],
        sub.astype(np.int64),
        np.ones(n, bool),
        {"image": image, "text": text},
    )
    settings = Settings(route_fit_validation_share=0.5, route_fit_min_queries=5)
    label_only = fit_table(data, settings, "c")
    assert label_only.info["eligible"] == label_only.info["grid"] and label_only.info["variants"] == 0
    originals = np.arange(0, n, 3)
    shot = unit(image[originals] + 0.05 * rng.normal(size=(len(originals), 32)))
    kept = fit_table(data, settings, "c", Variants(originals, {"image": shot, "text": text[originals]}))
    # Text alone (and the rank fusions of it) cannot single out the original: those routes are not eligible.
    assert kept.info["variants"] == len(originals) and kept.info["eligible"] < kept.info["grid"]
    assert kept.info["variant_r1_best"] > 0.9
    assert kept.info["variant_r1_global"] >= kept.info["variant_r1_best"] - settings.route_fit_variant_tolerance
    assert kept.global_row.weights["image"] > 0 and kept.global_row.score == 1.0
