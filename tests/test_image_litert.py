"""The LiteRT model is the Keras model: same vectors on real catalog images, same ImageNet classes, and a
converted file that no longer matches its source weights is refused and converted again."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedding.image import ImageConfig, MobileNetEmbedder
from embedding.image.convert import ConvertedModelError, check, convert_missing, model_path
from embedding.image.preprocess import prepare_image
from embedding.image.runtime import LiteRTForward, split
from embedding.image.weights import NO_TOP_FILE, keras_models_dir

pytestmark = [pytest.mark.weights, pytest.mark.slow]

EGYPTIAN_CAT, ESPRESSO = 285, 967


def test_litert_vectors_match_keras_on_catalog_images(catalog_dir: Path) -> None:
    from niteru.catalog import read_catalog, stratified_sample

    paths = [r.image_path(catalog_dir) for r in stratified_sample(read_catalog(catalog_dir), 40)]
    lite = MobileNetEmbedder(ImageConfig(batch_size=16)).load().embed_sources(paths)
    keras = MobileNetEmbedder(ImageConfig(batch_size=16), backend="keras").load().embed_sources(paths)
    assert lite.indices == keras.indices and len(lite.indices) == 40
    cosines = np.sum(lite.vectors * keras.vectors, axis=1)
    assert cosines.min() >= 0.9999, cosines.min()
    assert MobileNetEmbedder().version == "mobilenet_v1_1.0_224-imagenet-block13-pad"  # stored hashes stay valid
    # int8 vectors differ: they are named apart, so a store never mixes them with fp32 ones
    assert MobileNetEmbedder(ImageConfig(precision="int8")).version.endswith("-pad-int8")


def test_converted_with_top_model_classifies_imagenet_photos() -> None:
    import keras
    import skimage.data
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    model = keras.applications.MobileNet(weights="imagenet")  # the with-top file built by `niteru weights`
    interpreter = Interpreter(model_content=tf.lite.TFLiteConverter.from_keras_model(model).convert())
    interpreter.resize_tensor_input(0, [2, 224, 224, 3])
    interpreter.allocate_tensors()
    photos = [Image.fromarray(getattr(skimage.data, name)()) for name in ("chelsea", "coffee")]
    batch = np.stack([prepare_image(p, resize="stretch") for p in photos]).astype(np.float32) / 127.5 - 1.0
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch)
    interpreter.invoke()
    probs = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert int(probs[0].argmax()) == EGYPTIAN_CAT and probs[0, EGYPTIAN_CAT] > 0.85
    assert int(probs[1].argmax()) == ESPRESSO and probs[1, ESPRESSO] > 0.95


@pytest.fixture
def own_keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private copy of the weights: the test changes them, never the shared cache."""
    models = tmp_path / "keras" / "models"
    models.mkdir(parents=True)
    shutil.copy(keras_models_dir() / NO_TOP_FILE, models / NO_TOP_FILE)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    yield models


def test_a_model_converted_from_other_weights_is_refused_and_rebuilt(own_keras_home: Path) -> None:
    import h5py

    config = ImageConfig(block=1)  # the smallest network converts fastest
    with pytest.raises(ConvertedModelError, match="niteru weights"):
        MobileNetEmbedder(config).load()
    assert convert_missing(blocks=[1]) == [model_path(1)]
    assert convert_missing(blocks=[1]) == []  # current: nothing to do
    image = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    before = MobileNetEmbedder(config).load().embed(image)

    with h5py.File(own_keras_home / NO_TOP_FILE, "r+") as f:  # new weights: the first convolution doubled
        (name,) = list(f["conv1"].attrs["weight_names"])
        f["conv1"][name][...] = f["conv1"][name][...] * 2.0
    with pytest.raises(ConvertedModelError, match="other weights"):
        MobileNetEmbedder(config).load()
    assert convert_missing(blocks=[1]) == [model_path(1)]
    check(1)
    after = MobileNetEmbedder(config).load().embed(image)
    assert float(before[0] @ after[0]) < 0.9999, "the rebuilt model runs the new weights"


def test_a_half_written_model_is_refused(own_keras_home: Path) -> None:
    convert_missing(blocks=[1])
    path = model_path(1)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ConvertedModelError, match="half written"):
        check(1)


def test_batches_run_as_fixed_shapes_without_padding() -> None:
    assert split(37, (1, 8)) == [8, 8, 8, 8, 1, 1, 1, 1, 1]
    embedder = MobileNetEmbedder(ImageConfig(batch_size=32)).load()
    embedder._forward = LiteRTForward(embedder.config, shapes=(1, 8))  # several shapes, as a deployment may
    images = np.random.default_rng(1).integers(0, 256, (11, 224, 224, 3), dtype=np.uint8)
    together = embedder.embed(images)
    alone = np.concatenate([embedder.embed(images[i : i + 1]) for i in range(11)])
    np.testing.assert_allclose(together, alone, atol=1e-5)
