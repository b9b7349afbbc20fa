"""Category estimation on real catalog vectors: accurate on held-out products, calibrated, versioned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedding.category import (
    CategoryModelMissingError,
    load_category_model,
    save_category_model,
    train_category_model,
)
from niteru.catalog import CatalogRow, read_catalog, stratified_sample

pytestmark = [pytest.mark.slow, pytest.mark.weights, pytest.mark.catalog]


@pytest.fixture(scope="module")
def vectors(
    catalog_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[CatalogRow], np.ndarray, np.ndarray]:
    from embedding.image import MobileNetEmbedder
    from embedding.text import TextConfig, TextEmbedder, train_text_model

    rows = stratified_sample([r for r in read_catalog(catalog_dir) if r.category != "sports"], 360)
    image = MobileNetEmbedder().load().embed_sources([r.image_path(catalog_dir) for r in rows])
    assert not image.errors
    config = TextConfig(tmp_path_factory.mktemp("category"), dim=48, epochs=40, clusters=8, reduced_dim=32, threads=1)
    train_text_model([r.text for r in rows], config)
    text = TextEmbedder(config).load().embed([r.text for r in rows])
    return rows, image.vectors, text


def test_held_out_products_get_their_category(vectors: tuple[list[CatalogRow], np.ndarray, np.ndarray]) -> None:
    rows, image, text = vectors
    labels = [r.category for r in rows]
    train, test = np.arange(len(rows)) % 4 != 0, np.arange(len(rows)) % 4 == 0
    model = train_category_model(image[train], text[train], [labels[i] for i in np.where(train)[0]], min_class_size=5)
    truth = np.array(labels)[test]
    majority = max(float((truth == c).mean()) for c in set(labels))
    assert majority < 0.7  # fashion is about 60% of the catalog: the bar below is well above guessing it
    # Text-only learns from a tiny text model trained on 360 texts here, hence its lower bar.
    bars = {"image": 0.85, "text": 0.75, "image+text": 0.85}
    for given in ({"image": image[test]}, {"text": text[test]}, {"image": image[test], "text": text[test]}):
        proba = model.predict_proba(**given)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
        accuracy = float((np.array(model.classes)[proba.argmax(axis=1)] == truth).mean())
        name = "+".join(sorted(given))
        assert accuracy > bars[name], f"{name}: {accuracy:.2f}"
    # A random label assignment must not reach that: the classifier learns from the vectors.
    shuffled = list(np.random.default_rng(0).permutation([labels[i] for i in np.where(train)[0]]))
    noise = train_category_model(image[train], text[train], shuffled, min_class_size=5)
    noise_acc = float((np.array(noise.classes)[noise.predict_proba(image=image[test]).argmax(axis=1)] == truth).mean())
    assert noise_acc < 0.75


def test_rare_categories_are_dropped_and_reported(vectors: tuple[list[CatalogRow], np.ndarray, np.ndarray]) -> None:
    rows, image, text = vectors
    labels = [r.category for r in rows]
    labels[0] = "a-category-of-one"
    model = train_category_model(image, text, labels, min_class_size=5)
    from collections import Counter

    counts = Counter(labels)
    assert "a-category-of-one" in model.dropped
    assert model.dropped == sorted(c for c, n in counts.items() if n < 5)
    assert "a-category-of-one" not in model.classes
    top = model.top(model.predict_proba(image=image[:2]), k=2)
    assert len(top) == 2 and len(top[0]) == 2 and top[0][0][1] >= top[0][1][1]


def test_saved_model_reloads_identically_and_refuses_other_versions(
    vectors: tuple[list[CatalogRow], np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    rows, image, text = vectors
    model = train_category_model(image, text, [r.category for r in rows])
    save_category_model(model, tmp_path)
    again = load_category_model(tmp_path)
    np.testing.assert_array_equal(
        again.predict_proba(image=image, text=text), model.predict_proba(image=image, text=text)
    )
    pointer = tmp_path / "current.json"
    pointer.write_text(pointer.read_text().replace('"format_version": 2', '"format_version": 99'))
    with pytest.raises(CategoryModelMissingError, match="retrain"):
        load_category_model(tmp_path)
    with pytest.raises(CategoryModelMissingError, match="niteru"):
        load_category_model(tmp_path / "empty")
