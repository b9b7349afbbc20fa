"""The category classifier in service: trained from the store's own vectors, used to route and to fill
in a category a shop left out.

The model lives next to the text model (``models_dir/category``), versioned and written atomically by
``embedding.category``. It is trained on the products whose category the shop gave; estimated categories
are never fed back as labels.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from embedding.category import CategoryModel, load_category_model, save_category_model, train_category_model
from niteru.settings import Settings
from niteru.store.base import ProductStore

log = logging.getLogger(__name__)

# (image vector, text vector) -> [(category, probability), ...] best first: what routing and the write
# path ask of the classifier (None where there is no classifier).
Estimator = Callable[[np.ndarray | None, np.ndarray | None], list[tuple[str, float]]]

# Estimates returned by ``estimate`` and ``POST /v1/categorize``.
TOP_CATEGORIES = 3
# A category needs this many labelled products to be learned (and calibrated by 3-fold CV).
MIN_CLASS_SIZE = 5


def category_dir(settings: Settings) -> Path:
    return settings.models_dir / "category"


def labelled_vectors(store: ProductStore) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Image vectors, text vectors and shop-given categories of every stored product (scrolled)."""
    images: list[np.ndarray] = []
    texts: list[np.ndarray] = []
    labels: list[str] = []
    with tqdm(total=store.count(), desc="read vectors", unit="product") as bar:
        for batch in store.scroll(batch_size=512, with_vectors=True):
            for p in batch:
                bar.update()
                if p.product.category_estimated or not p.product.category or len(p.vectors) < 2:
                    continue
                images.append(p.vectors["image"])
                texts.append(p.vectors["text"])
                labels.append(p.product.category)
    if not labels:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32), []
    return np.stack(images), np.stack(texts), labels


class CategoryTrainingError(ValueError):
    """Too few labelled products to learn categories from."""


def fit_from_store(store: ProductStore, settings: Settings) -> CategoryModel:
    """Fit the classifier on the store's labelled products (``CategoryTrainingError``: too few)."""
    image, text, labels = labelled_vectors(store)
    learnable = sorted(c for c, n in Counter(labels).items() if n >= MIN_CLASS_SIZE)
    if len(learnable) < 2:
        raise CategoryTrainingError(
            f"the classifier needs at least 2 categories with {MIN_CLASS_SIZE}+ products each; "
            f"the store has {dict(Counter(labels))}"
        )
    log.info("training the category classifier on %d products, %d categories", len(labels), len(set(labels)))
    model = train_category_model(image, text, labels, min_class_size=MIN_CLASS_SIZE, seed=settings.text_seed)
    if model.dropped:
        log.warning("categories with too few products to learn, left out: %s", model.dropped)
    return model


def train_from_store(store: ProductStore, settings: Settings) -> Path:
    """Fit the classifier on the store's labelled products and make it current; returns its file."""
    return save_category_model(fit_from_store(store, settings), category_dir(settings))


def load_current(settings: Settings) -> CategoryModel:
    return load_category_model(category_dir(settings))


def estimate(model: CategoryModel, image: np.ndarray | None, text: np.ndarray | None) -> list[tuple[str, float]]:
    """The likeliest categories of one product, best first, from whichever vectors it has.

    A zero text vector (a text without a known word) says nothing: it is treated as absent.
    """
    if text is not None and not np.any(text):
        text = None
    proba = model.predict_proba(
        image=None if image is None else np.asarray(image, np.float32)[None],
        text=None if text is None else np.asarray(text, np.float32)[None],
    )
    return model.top(proba, k=TOP_CATEGORIES)[0]


def estimator_of(model: CategoryModel | None) -> Estimator | None:
    """The classifier as the write path's and the similar-products use case's estimator."""
    if model is None:
        return None
    return lambda image, text: estimate(model, image, text)
