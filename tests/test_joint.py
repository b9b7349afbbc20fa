"""The joint vector: trained with Keras on real catalog vectors, served by numpy, stored by both engines.

The training test embeds a stratified sample of catalog-dev with the session's real models, trains on most
of it and checks the held-out part: its joint vectors find their category more often than chance, and a
re-shot, re-titled variant of a product finds that product first. The store tests write products through the
real write path into each engine, with and without a joint model, and run a rebuild that trains one.
"""

from __future__ import annotations

import io
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedding.joint import JointConfig, JointEmbedder
from embedding.joint.artifact import save_artifact
from embedding.joint.augment import reshoot, rewrite
from embedding.joint.model import forward
from embedding.joint.train import build_network, train_joint
from niteru.catalog import CatalogRow, read_catalog, stratified_sample
from niteru.embedders import Embedders, load_embedders
from niteru.products import ProductFields
from niteru.rebuild import rebuild
from niteru.refusals import Refusal
from niteru.routing import Mode
from niteru.settings import Settings
from niteru.similar import SimilarOptions, similar_products
from niteru.store import open_store
from niteru.write_inputs import ImageSource, ProductWrite
from niteru.writes import ProductWriter
from tests.store_fixtures import Ingested

pytestmark = [pytest.mark.weights, pytest.mark.catalog, pytest.mark.slow]

SAMPLE = 320
HELD_OUT = 64
CONFIG = {"dim": 64, "hidden": 256, "epochs": 40, "batch_size": 64, "seed": 3, "min_products": 10}


@dataclass
class Trained:
    rows: list[CatalogRow]
    image: np.ndarray
    text: np.ndarray
    joint: JointEmbedder
    arrays: dict[str, np.ndarray]
    config: JointConfig
    models_dir: Path


def embed_rows(rows: list[CatalogRow], catalog: Path, embedders: Embedders) -> tuple[np.ndarray, np.ndarray]:
    images = embedders.image.embed_sources([catalog / r.image for r in rows])
    assert not images.errors and images.indices == list(range(len(rows)))
    return images.vectors, embedders.text.embed([r.text for r in rows])


def variants(rows: list[CatalogRow], catalog: Path, embedders: Embedders, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shots = []
    for r in rows:
        with Image.open(io.BytesIO((catalog / r.image).read_bytes())) as img:
            shots.append(reshoot(img, rng))
    images = embedders.image.embed_sources(shots)
    assert not images.errors
    return images.vectors, embedders.text.embed([rewrite(r.text, rng) for r in rows])


@pytest.fixture(scope="module")
def trained(ingested: Ingested, catalog_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    rows = stratified_sample(read_catalog(catalog_dir), SAMPLE)
    emb = ingested.embedders
    image, text = embed_rows(rows, catalog_dir, emb)
    train = slice(HELD_OUT, None)
    view_image, view_text = variants(rows[train], catalog_dir, emb, seed=1)
    labels = [f"{r.category}/{r.subcategory}" for r in rows[train]]
    config = JointConfig(model_dir=tmp_path_factory.mktemp("models") / "joint", **CONFIG)
    reshot = np.ones(len(labels), bool)
    arrays, meta = train_joint(image[train], text[train], labels, view_image, view_text, reshot, config)
    save_artifact(arrays, meta, config.model_dir, emb.text.version)
    joint = JointEmbedder(config).load(emb.text.version)
    return Trained(rows, image, text, joint, arrays, config, config.model_dir.parent)


def test_numpy_forward_equals_the_keras_model(trained: Trained) -> None:
    network = build_network(trained.image.shape[1], trained.text.shape[1], trained.config)
    a = trained.arrays
    network.get_layer("w1").set_weights([a["w1"], a["b1"]])
    network.get_layer("w2").set_weights([a["w2"], a["b2"]])
    x = np.concatenate([trained.image, trained.text], axis=1)
    keras_out = np.asarray(network.predict(x, verbose=0))
    numpy_out = trained.joint.embed(trained.image, trained.text)
    assert numpy_out.shape == (SAMPLE, trained.config.dim)
    np.testing.assert_allclose(numpy_out, keras_out, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(numpy_out, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(numpy_out, forward(a, trained.image, trained.text))


def test_held_out_products_find_their_category_better_than_chance(trained: Trained) -> None:
    vectors = trained.joint.embed(trained.image, trained.text)
    cats = np.asarray([r.category for r in trained.rows])
    sims = vectors[:HELD_OUT] @ vectors.T
    np.fill_diagonal(sims[:, :HELD_OUT], -np.inf)  # never oneself
    top = np.argsort(-sims, axis=1)[:, :5]
    hit_rate = float(np.mean(cats[top] == cats[:HELD_OUT, None]))
    # Chance: a random other product has the query's category.
    shares = np.asarray(list(Counter(cats.tolist()).values())) / len(cats)
    chance = float(np.sum(shares**2))
    assert hit_rate > chance + 0.3, (hit_rate, chance)


def test_re_shot_variants_find_their_original_first(trained: Trained, ingested: Ingested, catalog_dir: Path) -> None:
    held = trained.rows[:HELD_OUT]
    view_image, view_text = variants(held, catalog_dir, ingested.embedders, seed=99)  # not seen in training
    originals = trained.joint.embed(trained.image, trained.text)
    queries = trained.joint.embed(view_image, view_text)
    nearest = np.argmax(queries @ originals.T, axis=1)
    recall_at_1 = float(np.mean(nearest == np.arange(HELD_OUT)))
    assert recall_at_1 >= 0.8, recall_at_1


def test_a_damaged_model_is_refused(trained: Trained, tmp_path: Path) -> None:
    from embedding.joint import JointModelError, JointModelMissingError

    model_dir = tmp_path / "joint"
    path = save_artifact(trained.arrays, dict(trained.joint.meta), model_dir, "text-x")
    config = JointConfig(model_dir=model_dir)
    assert JointEmbedder(config).load("text-x").version == trained.joint.version  # the same weights, same version
    with pytest.raises(JointModelMissingError):
        JointEmbedder(config).load("text-y")
    data = bytearray((path / "weights.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "weights.npz").write_bytes(bytes(data))
    with pytest.raises(JointModelError, match="checksum"):
        JointEmbedder(config).load("text-x")


def copy_data(ingested: Ingested, tmp_path: Path, **settings: object) -> Settings:
    data = tmp_path / "data"
    shutil.copytree(ingested.settings.data_dir, data)
    return Settings(**{**ingested.settings.model_dump(), "data_dir": data, **settings})


def new_product(ingested: Ingested, pid: str) -> ProductWrite:
    src = ingested.good[3]
    fields = ProductFields(shop_id="s-new", title=src.title, category=src.category, subcategory=src.subcategory)
    return ProductWrite(pid, fields, ImageSource.path(src.image))


@pytest.mark.parametrize("engine", ["edge", "qdrant"])
def test_a_product_written_after_the_model_exists_has_the_joint_vector(
    trained: Trained, ingested: Ingested, tmp_path: Path, engine: str
) -> None:
    settings = Settings(**{**ingested.settings.model_dump(), "data_dir": tmp_path / "data", "store_engine": engine})
    shutil.copytree(ingested.settings.models_dir, settings.models_dir)
    shutil.copytree(trained.models_dir / "joint", settings.models_dir / "joint")
    embedders = load_embedders(settings)
    assert embedders.joint is not None and embedders.joint.version == trained.joint.version
    with open_store(settings) as store:
        store.ensure_collection(embedders.dims)
        writer = ProductWriter(settings, store, embedders)
        for i, row in enumerate(ingested.good[:12]):
            fields = ProductFields(shop_id=row.shop_id, title=row.title, category=row.category)
            writer.write(ProductWrite(f"p-{i}", fields, ImageSource.path(row.image)))
        writer.write(new_product(ingested, "written-later"))
        point = store.get("written-later", with_vectors=True)
        assert point is not None and set(point.vectors) == {"image", "text", "joint"}
        assert point.product.joint_model_version == trained.joint.version
        expected = trained.joint.embed(point.vectors["image"], point.vectors["text"])[0]
        np.testing.assert_allclose(point.vectors["joint"], expected, atol=1e-5)
        result = similar_products(store, "written-later", settings, SimilarOptions(k=3, mode=Mode.joint))
        assert result.route.weights == {"joint": 1.0} and len(result.hits) == 3
        others = {p.product.product_id: p.vectors["joint"] for b in store.scroll(batch_size=64) for p in b}
        best = max((float(v @ expected), pid) for pid, v in others.items() if pid != "written-later")
        assert result.hits[0].product.product_id == best[1]
        assert result.hits[0].score == pytest.approx(best[0], abs=1e-4)


def test_a_fresh_store_without_a_joint_model_works_and_says_why_mode_joint_cannot(
    ingested: Ingested, tmp_path: Path
) -> None:
    settings = copy_data(ingested, tmp_path)
    embedders = load_embedders(settings)
    assert embedders.joint is None and set(embedders.dims) == {"image", "text"}
    with open_store(settings) as store:
        store.ensure_collection(embedders.dims)
        ProductWriter(settings, store, embedders).write(new_product(ingested, "fresh"))
        point = store.get("fresh", with_vectors=True)
        assert point is not None and set(point.vectors) == {"image", "text"}
        assert point.product.joint_model_version is None
        routed = similar_products(store, "fresh", settings, SimilarOptions(k=5))
        assert len(routed.hits) == 5 and "joint" not in routed.route.weights
        with pytest.raises(Refusal) as refused:
            similar_products(store, "fresh", settings, SimilarOptions(k=5, mode=Mode.joint))
        assert refused.value.status == 409 and "rebuild" in refused.value.message


def test_the_rebuild_trains_the_joint_model_and_stores_the_vector(ingested: Ingested, tmp_path: Path) -> None:
    settings = copy_data(ingested, tmp_path, joint_min_products=10, joint_reshoot=16, joint_epochs=5)
    with open_store(settings) as store:
        count = store.count()
        report = rebuild(store, settings)
        assert report.joint_model is not None
        points = [p for batch in store.scroll(batch_size=64) for p in batch]
        assert len(points) == count
        assert all(set(p.vectors) == {"image", "text", "joint"} for p in points)
        assert {p.product.joint_model_version for p in points} == {report.joint_model}
        pid = points[0].product.product_id
        assert len(similar_products(store, pid, settings, SimilarOptions(k=5, mode=Mode.joint)).hits) == 5
    # A process started after the rebuild loads the joint model of the live text model, and writes with it.
    embedders = load_embedders(settings)
    assert embedders.joint is not None and embedders.joint.version == report.joint_model
    with open_store(settings) as store:
        store.ensure_collection(embedders.dims)
        ProductWriter(settings, store, embedders).write(new_product(ingested, "after-rebuild"))
        point = store.get("after-rebuild", with_vectors=True)
        assert point is not None and "joint" in point.vectors
