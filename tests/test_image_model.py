"""The weights are real ImageNet weights, and the extractor behaves like a similarity model should."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from embedding.image import ImageConfig, MobileNetEmbedder
from embedding.image.preprocess import prepare_image

pytestmark = [pytest.mark.weights, pytest.mark.slow]

EGYPTIAN_CAT, ESPRESSO = 285, 967


@pytest.fixture(scope="module")
def embedder() -> MobileNetEmbedder:
    return MobileNetEmbedder(ImageConfig(batch_size=8)).load()


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    import skimage.data

    return {name: Image.fromarray(getattr(skimage.data, name)()) for name in ("chelsea", "coffee", "astronaut")}


def crops(image: Image.Image) -> tuple[Image.Image, Image.Image]:
    """Two overlapping crops of one photo (left 80% and right 80%)."""
    w, h = image.size
    return image.crop((0, 0, int(w * 0.8), h)), image.crop((int(w * 0.2), 0, w, h))


def test_with_top_model_classifies_imagenet_photos(photos: dict[str, Image.Image]) -> None:
    import keras

    model = keras.applications.MobileNet(weights="imagenet")  # the with-top file built by `niteru weights`
    batch = np.stack([prepare_image(photos[n], resize="stretch") for n in ("chelsea", "coffee")])
    probs = model.predict(keras.applications.mobilenet.preprocess_input(batch.astype("float32")), verbose=0)
    assert int(probs[0].argmax()) == EGYPTIAN_CAT and probs[0, EGYPTIAN_CAT] > 0.85
    assert int(probs[1].argmax()) == ESPRESSO and probs[1, ESPRESSO] > 0.95


def test_vectors_are_unit_length_float32(embedder: MobileNetEmbedder, photos: dict[str, Image.Image]) -> None:
    result = embedder.embed_sources(list(photos.values()))
    assert result.vectors.shape == (3, 1024) and result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(result.vectors).all()


def similarity_gap(vectors: Any) -> float:
    """cos(crop A1, crop A2) minus the mean cos between crops of different photos."""
    a1, a2, b1, b2 = vectors
    return float(a1 @ a2 - np.mean([a1 @ b1, a1 @ b2, a2 @ b1, a2 @ b2]))


def test_crops_of_one_photo_are_closer_than_different_photos(
    embedder: MobileNetEmbedder, photos: dict[str, Image.Image]
) -> None:
    import keras
    import tensorflow as tf

    images = [*crops(photos["chelsea"]), *crops(photos["astronaut"])]
    real = embedder.embed_sources(images).vectors
    assert real[0] @ real[1] > 0.8
    assert real[0] @ real[1] > max(real[0] @ real[2], real[1] @ real[3]) + 0.3

    keras.utils.set_random_seed(0)
    random_net = keras.applications.MobileNet(include_top=False, weights=None, pooling="avg")
    batch = np.stack([embedder.prepare(i) for i in images]).astype("float32") / 127.5 - 1.0
    rand = tf.math.l2_normalize(random_net(batch, training=False), axis=1).numpy()
    assert similarity_gap(real) > 3 * max(similarity_gap(rand), 0.01), "real weights separate photos far better"


def test_batch_size_does_not_change_vectors(photos: dict[str, Image.Image]) -> None:
    images = [*crops(photos["chelsea"]), photos["coffee"]]
    one = MobileNetEmbedder(ImageConfig(batch_size=1)).load().embed_sources(images).vectors
    many = MobileNetEmbedder(ImageConfig(batch_size=64)).load().embed_sources(images).vectors
    np.testing.assert_allclose(one, many, atol=1e-4)


def test_bad_items_are_reported_and_good_ones_embedded(
    embedder: MobileNetEmbedder, photos: dict[str, Image.Image], tmp_path: Path
) -> None:
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image")
    sources: list[bytes | Path | Image.Image] = [
        photos["chelsea"],
        b"",
        fake,
        tmp_path / "missing.jpg",
        photos["coffee"],
        b"\xff\xd8\xff\xe0garbage",
    ]
    result = embedder.embed_sources(sources)
    assert result.indices == [0, 4]
    assert {i: e.reason for i, e in result.errors.items()} == {
        1: "empty",
        2: "not_an_image",
        3: "not_found",
        5: "corrupt",
    }
    assert result.vectors.shape == (2, 1024)
    alone = embedder.embed_sources([photos["coffee"]]).vectors[0]
    same = result.vector_for(4)
    assert same is not None
    np.testing.assert_allclose(same, alone, atol=1e-5)
    assert result.vector_for(1) is None


def test_intermediate_block_gives_pooled_earlier_features(photos: dict[str, Image.Image]) -> None:
    block11 = MobileNetEmbedder(ImageConfig(block=11)).load()
    vectors = block11.embed_sources([*crops(photos["chelsea"]), photos["coffee"]]).vectors
    assert vectors.shape == (3, 512)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_real_catalog_images_embed(embedder: MobileNetEmbedder, catalog_dir: Path) -> None:
    from niteru.catalog import read_catalog, stratified_sample

    rows = stratified_sample(read_catalog(catalog_dir), 24)
    result = embedder.embed_sources([r.image_path(catalog_dir) for r in rows])
    assert not result.errors
    assert result.vectors.shape == (24, 1024)
