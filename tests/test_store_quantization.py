"""Quantized vectors in the store: each engine creates its collections with the quantization the settings
choose per named vector (read back from the engine's own collection config), new versions and migrations
carry it, the tombstones never get it, and quantized searches rescored with the float32 originals stay
close to exact search.

Recall is measured on Edge with its HNSW index and quantized codes built (qdrant-client's local mode scans
exactly and keeps no codes, so there only the collection config and the request are checked).
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from qdrant_client import models

from niteru.settings import QuantizationKind, Settings
from niteru.store import Fusion, ProductPoint, ProductStore, SearchFilter, open_store
from niteru.store.edge import EdgeProductStore
from niteru.store.migrate import migrate
from niteru.store.plan import plan_search
from niteru.store.qdrant import QdrantProductStore
from niteru.store.qdrant_plan import to_request
from niteru.store.quantization import configured
from tests.test_store import DIMS, ENGINES, make_point

KINDS: tuple[QuantizationKind, ...] = get_args(QuantizationKind)
IMAGE_DIM = 512


def quantization(store: ProductStore, version: str) -> dict[str, str]:
    """The collection's quantization as the engine itself stores it (its config, not the settings)."""
    if isinstance(store, EdgeProductStore):
        return dict(store.shards.quantization(version))
    assert isinstance(store, QdrantProductStore)
    return dict(store.quantization_of(version))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_new_collection_has_the_configured_quantization_per_vector(
    tmp_path: Path, engine: str, kind: QuantizationKind
) -> None:
    settings = Settings(data_dir=tmp_path, store_engine=engine, quantization_image=kind, quantization_text="scalar")
    rng = np.random.default_rng(1)
    with open_store(settings) as store:
        store.ensure_collection(DIMS)
        info = store.info()  # flat, as /readyz shows it
        assert (info["quantization_image"], info["quantization_text"]) == (kind, "scalar")
        store.upsert([make_point(i, 5, rng) for i in range(3)])
        assert store.delete("p-1", version=6)  # creates the tombstone collection: one-value vectors, never quantized
        assert quantization(store, f"{settings.store_alias}_tombstones") == {"image": "none", "text": "none"}
        version = store.collection
    with open_store(settings.model_copy(update={"quantization_image": "none"})) as store:
        # A collection keeps what it was created with; the settings reach the next one.
        assert quantization(store, version) == {"image": kind, "text": "scalar"}
        fresh = store.create_version(DIMS)  # what the rebuild and a migration call
        assert quantization(store, fresh) == {"image": "none", "text": "scalar"}


def test_a_migration_creates_the_target_with_the_target_quantization(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    points = [make_point(i, 3, rng) for i in range(40)]
    plain = Settings(data_dir=tmp_path / "a", store_engine="edge", quantization_image="none")
    turbo = Settings(
        data_dir=tmp_path / "b", store_engine="edge", quantization_image="turbo", edge_indexing_threshold_kb=1
    )
    with open_store(plain) as source, open_store(turbo) as target:
        source.ensure_collection(DIMS)
        source.upsert(points)
        report = migrate(source, target)
        assert quantization(target, target.collection) == {"image": "turbo", "text": "none"}
        assert quantization(source, source.collection) == {"image": "none", "text": "none"}
        assert target.count() == len(points) and report.switched


def test_the_qdrant_request_rescores_only_the_quantized_vector() -> None:
    settings = Settings(quantization_image="product", quantization_image_oversampling=3.0, quantization_text="none")
    rng = np.random.default_rng(3)
    vectors = {"image": rng.normal(size=16).astype(np.float32), "text": rng.normal(size=8).astype(np.float32)}
    plan = plan_search(vectors, {"image": 1.0, "text": 0.5}, 10, None, Fusion.wsum, dims=DIMS, rrf_k=60)
    request = to_request(plan, configured(settings))
    params = {p.using: p.params for p in request.prefetch or []}  # type: ignore[union-attr]
    assert params["image"] == models.SearchParams(
        quantization=models.QuantizationSearchParams(rescore=True, oversampling=3.0)
    )
    assert params["text"] is None
    exact = plan_search(vectors, {"image": 1.0}, 10, None, Fusion.wsum, dims=DIMS, rrf_k=60, exact=True)
    params = {p.using: p.params for p in to_request(exact, configured(settings)).prefetch or []}  # type: ignore[union-attr]
    # Exact search (the ground truth) reads the float32 originals, never the codes.
    assert params["image"] == models.SearchParams(exact=True, quantization=models.QuantizationSearchParams(ignore=True))
    assert params["text"] == models.SearchParams(exact=True)


def catalog_like(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors shaped like pooled CNN features: non-negative, sparse, in clusters of near duplicates
    (product photos of one kind), so that the nearest neighbours are close calls a coarse code can get wrong."""
    centres = np.maximum(rng.normal(size=(n // 20, dim)), 0) * (rng.random((n // 20, dim)) < 0.3)
    x = np.maximum(centres[rng.integers(0, len(centres), n)] + rng.normal(0, 0.35, size=(n, dim)), 0) + 1e-3
    x = x.astype(np.float32)
    unit: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[ProductPoint], np.ndarray]:
    rng = np.random.default_rng(4)
    image, text = catalog_like(2000, IMAGE_DIM, rng), catalog_like(2000, DIMS["text"], rng)
    points = [ProductPoint(make_point(i, 1, rng).product, {"image": image[i], "text": text[i]}) for i in range(2000)]
    return points, image


# Minimum mean recall@10 against exact search with rescoring, per kind (oversampling 2; 2,000 x 512-d).
RECALL = {"scalar": 0.97, "product": 0.95, "binary": 0.95, "turbo": 0.97}


@pytest.mark.slow  # 2,000 x 512-d per kind, about 13 s in all: the full suite, not the fast tier
@pytest.mark.parametrize("kind", list(RECALL))
def test_quantized_search_with_rescoring_stays_close_to_exact(
    tmp_path: Path, kind: QuantizationKind, catalog: tuple[list[ProductPoint], np.ndarray]
) -> None:
    points, image = catalog
    settings = Settings(data_dir=tmp_path, store_engine="edge", quantization_image=kind, edge_indexing_threshold_kb=1)
    with open_store(settings) as store:
        store.ensure_collection({"image": IMAGE_DIM, "text": DIMS["text"]})
        store.upsert(points)
        store.build_index()
        assert store.info()["indexed_vectors"] > 0
        recalls, fused = [], []
        for i in range(0, 2000, 40):
            q = {"image": image[i], "text": points[i].vectors["text"]}
            f = SearchFilter(exclude_product_ids=(f"p-{i}",))
            got = store.search({"image": image[i]}, {"image": 1.0}, 10, f)
            want = store.search({"image": image[i]}, {"image": 1.0}, 10, f, exact=True)
            recalls.append(len({h.product.product_id for h in got} & {h.product.product_id for h in want}) / 10)
            # Rescored: every score is the float32 cosine, not the code's estimate.
            rows = [int(h.product.product_id[2:]) for h in got]
            np.testing.assert_allclose([h.score for h in got], image[rows] @ image[i], atol=1e-4)
            weights = {"image": 1.0, "text": 0.2}
            fused_got = {h.product.product_id for h in store.search(q, weights, 10, f)}
            fused_want = {h.product.product_id for h in store.search(q, weights, 10, f, exact=True)}
            fused.append(len(fused_got & fused_want) / 10)
        assert np.mean(recalls) >= RECALL[kind], np.mean(recalls)
        assert np.mean(fused) >= RECALL[kind], np.mean(fused)
