"""From a product's fields and image bytes to a storable ``ProductPoint`` (used by ``niteru.writes``).

``Embedders`` holds the loaded models (the joint model once a rebuild trained one for the text model);
``embed_products`` turns a batch of inputs into points, and reports each item that cannot become one (bad
image, text without a single word) as a ``Refusal`` instead of failing the batch.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from niteru.products import Product, ProductFields, content_hash, utc_now
from niteru.refusals import Refusal, from_embedding, no_words
from niteru.settings import Settings
from niteru.store.base import ProductPoint

if TYPE_CHECKING:
    from embedding.image import MobileNetEmbedder
    from embedding.joint import JointEmbedder
    from embedding.text import TextEmbedder

log = logging.getLogger(__name__)


@dataclass
class Embedders:
    image: MobileNetEmbedder
    text: TextEmbedder
    # Trained on this text model's vectors (``niteru.joint``); None before a rebuild trained one.
    joint: JointEmbedder | None = None

    @property
    def dims(self) -> dict[str, int]:
        dims = {"image": self.image.dim, "text": self.text.dim}
        if self.joint is not None:
            dims["joint"] = self.joint.dim
        return dims

    @property
    def joint_version(self) -> str | None:
        return None if self.joint is None else self.joint.version

    def vectors(self, image: np.ndarray, text: np.ndarray) -> dict[str, np.ndarray]:
        """A product's named vectors from its image and text vectors (the joint one when there is a model)."""
        out = {"image": image, "text": text}
        if self.joint is not None:
            out["joint"] = self.joint.embed(image, text)[0]
        return out


def load_embedders(settings: Settings, train_texts: Sequence[str] | None = None) -> Embedders:
    """Load both models once. Without a text model, train one on ``train_texts`` if given, else raise
    ``TextModelMissingError`` (its message says how to train one)."""
    from embedding.image import MobileNetEmbedder
    from embedding.text import TextEmbedder, TextModelMissingError, train_text_model
    from niteru.joint import load_joint
    from niteru.model_config import image_config, text_config

    try:
        text = TextEmbedder(text_config(settings)).load()
    except TextModelMissingError:
        if train_texts is None:
            raise
        log.info("no text model yet: training one on %d catalog texts", len(train_texts))
        train_text_model(train_texts, text_config(settings))
        text = TextEmbedder(text_config(settings)).load()
    return Embedders(MobileNetEmbedder(image_config(settings)).load(), text, load_joint(settings, text.version))


@dataclass
class ProductInput:
    """One product to embed: its fields, its image bytes and where they came from."""

    product_id: str
    fields: ProductFields
    image_bytes: bytes
    image_ref: str
    image_version: int

    @cached_property  # read by the content hash and the stored product: hash the bytes once
    def image_sha256(self) -> str:
        return hashlib.sha256(self.image_bytes).hexdigest()


def input_hash(item: ProductInput, embedders: Embedders) -> str:
    e = embedders
    return content_hash(item.fields, item.image_sha256, e.image.version, e.text.version, e.joint_version)


def embed_products(items: Sequence[ProductInput], embedders: Embedders) -> list[ProductPoint | Refusal]:
    """A point per input, in order, or the reason it failed; one bad item never sinks the batch."""
    if not items:
        return []
    text_vectors = embedders.text.embed([it.fields.text for it in items])
    images = embedders.image.embed_sources([it.image_bytes for it in items])
    image_rows = {index: row for row, index in enumerate(images.indices)}
    now = utc_now()
    out: list[ProductPoint | Refusal] = []
    for i, it in enumerate(items):
        if i in images.errors:
            out.append(from_embedding(images.errors[i], it.product_id))
            continue
        if not np.any(text_vectors[i]):
            # The text model gives a zero vector to a text without a single known word; it would be
            # nobody's neighbour, so the product is refused rather than stored half-searchable.
            out.append(no_words(it.product_id))
            continue
        product = Product(
            **it.fields.model_dump(),
            product_id=it.product_id,
            image=it.image_ref,
            image_sha256=it.image_sha256,
            image_version=it.image_version,
            image_model_version=embedders.image.version,
            text_model_version=embedders.text.version,
            joint_model_version=embedders.joint_version,
            content_hash=input_hash(it, embedders),
            updated_at=now,
        )
        out.append(ProductPoint(product, embedders.vectors(images.vectors[image_rows[i]], text_vectors[i])))
    return out


def reembed_text(existing: ProductPoint, fields: ProductFields, embedders: Embedders) -> ProductPoint | Refusal | None:
    """A text or price update of a stored product: a new text vector, the stored image vector and image
    version. None when nothing changed (same fields, image and models)."""
    old = existing.product
    e = embedders
    digest = content_hash(fields, old.image_sha256, old.image_model_version, e.text.version, e.joint_version)
    if digest == old.content_hash:
        return None
    vector = embedders.text.embed([fields.text])[0]
    if not np.any(vector):
        return no_words(old.product_id)
    product = old.model_copy(
        update={
            **fields.model_dump(),
            "text_model_version": embedders.text.version,
            "joint_model_version": embedders.joint_version,
            "content_hash": digest,
            "updated_at": utc_now(),
        }
    )
    return ProductPoint(product, embedders.vectors(existing.vectors["image"], vector))
