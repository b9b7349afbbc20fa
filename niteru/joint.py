"""The joint vector in the service: which joint model goes with a text model, and training one at rebuild.

A joint model reads one text model's vectors, so it is stored per text model version
(``models/joint/<text version>/``) and follows the text model wherever the text model goes: a rebuild
trains both (the joint model written before the swap, like the collection's text-model record), a process
that follows a swap (``niteru.model_sync``) loads the joint model of the collection's text model, and a
rollback to a collection built before any joint model finds none and keeps two vectors.

Training data: the store's products with a shop-given category (an estimated one is never a label), each
labelled by category/subcategory, each paired with a variant: for up to ``joint_reshoot`` products whose
photo is in the catalog folder a re-shot photo (``embedding.joint.augment``) re-embedded by the image model,
and for those and as many more a re-written title re-embedded by the new text model.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from niteru.photos import has_photo
from niteru.refusals import Refusal
from niteru.settings import Settings
from niteru.store.records import ProductPoint

if TYPE_CHECKING:
    from embedding.image import MobileNetEmbedder
    from embedding.joint import JointEmbedder
    from embedding.text import TextEmbedder

log = logging.getLogger(__name__)
# Gives the (loaded) image model: the rebuild loads one for its joint step, routing fit and gate alike.
ImageModel = Callable[[], "MobileNetEmbedder"]


def load_joint(settings: Settings, text_version: str) -> JointEmbedder | None:
    """The joint model of text model ``text_version``; None when there is none yet (or it is broken: then
    the vector is left out and the error logged, as a missing vector only lowers what a query can use)."""
    from embedding.joint import JointEmbedder, JointModelError, JointModelMissingError
    from niteru.model_config import joint_config

    try:
        return JointEmbedder(joint_config(settings)).load(text_version)
    except JointModelMissingError:
        return None
    except JointModelError as exc:
        log.error("joint model of text model %s cannot load; no joint vectors: %s", text_version, exc)
        return None


def label_of(point: ProductPoint) -> str:
    p = point.product
    return f"{p.category}/{p.subcategory}" if p.subcategory else p.category


def train_for_rebuild(
    points: Sequence[ProductPoint],
    text_vectors: np.ndarray,
    text: TextEmbedder,
    settings: Settings,
    image_model: ImageModel | None = None,
) -> JointEmbedder | None:
    """Train, save and load the joint model for ``text`` (the rebuild's new text model, whose vectors of
    ``points`` are ``text_vectors``). None when it is switched off or there are too few labelled products.
    ``image_model``: gives the image model the re-shot photos are embedded with (default: one loaded here)."""
    from embedding.joint import JointEmbedder
    from embedding.joint.artifact import save_artifact
    from embedding.joint.train import train_joint
    from niteru.model_config import joint_config

    config = joint_config(settings)
    if not settings.joint_enabled:
        return None
    from niteru.route_grid import in_validation

    # The routing fit's validation products are left out: the fit then weighs the joint vector by what it
    # does for products its model never saw, not by labels it learned (it would over-weight it).
    rows = [
        i
        for i, p in enumerate(points)
        if p.product.category
        and not p.product.category_estimated
        and not (settings.route_fit and in_validation(p.product.product_id, settings))
    ]
    if len(rows) < config.min_products:
        log.warning("joint model not trained: %d labelled products (at least %d)", len(rows), config.min_products)
        return None
    started = time.perf_counter()
    image = np.stack([points[i].vectors["image"] for i in rows]).astype(np.float32)
    txt = np.asarray(text_vectors[rows], np.float32)
    view_image, view_text, reshot = variants([points[i] for i in rows], image, txt, text, settings, image_model)
    variants_s = time.perf_counter() - started
    labels = [label_of(points[i]) for i in rows]
    arrays, meta = train_joint(image, txt, labels, view_image, view_text, reshot, config)
    save_artifact(arrays, meta, config.model_dir, text.version)
    joint = JointEmbedder(config).load(text.version)
    total = time.perf_counter() - started
    log.info(
        "joint model %s: %d products, %d photos re-shot; %.1f s in all (variants %.1f s, training %.1f s)",
        joint.version,
        len(rows),
        int(reshot.sum()),
        total,
        variants_s,
        meta["train_s"],
    )
    return joint


def variants(
    points: Sequence[ProductPoint],
    image: np.ndarray,
    txt: np.ndarray,
    text: TextEmbedder,
    settings: Settings,
    image_model: ImageModel | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The second view of each product: re-shot photo and re-written title where made, else the original
    (the trainer adds feature noise to rows not re-shot). Returns view images, view texts, re-shot mask."""
    from embedding.joint.augment import rewrite

    rng = np.random.default_rng(settings.joint_seed)
    order = rng.permutation(len(points))
    view_image, view_text = image.copy(), txt.copy()
    reshot = np.zeros(len(points), bool)
    # Photos the rebuild can read: catalog files, and the kept copies of uploads and URLs (niteru.photos).
    shots = [int(i) for i in order if has_photo(points[i].product.image, settings)]
    shots = shots[: settings.joint_reshoot]
    if shots:
        photos = _reshot_vectors([points[i].product.image for i in shots], rng, settings, image_model)
        for i, vector in zip(shots, photos, strict=True):
            if vector is not None:
                view_image[i], reshot[i] = vector, True
    rewritten = [int(i) for i in order[: max(len(shots), 2 * settings.joint_reshoot)]]
    if rewritten:
        vectors = text.embed([rewrite(points[i].product.text, rng) for i in rewritten])
        for i, vector in zip(rewritten, vectors, strict=True):
            if np.any(vector):  # a title with no known word left keeps its original text vector
                view_text[i] = vector
    return view_image, view_text, reshot


def _reshot_vectors(
    refs: list[str], rng: np.random.Generator, settings: Settings, image_model: ImageModel | None
) -> list[np.ndarray | None]:
    """The image vectors of re-shot catalog photos (None where the photo cannot be read or decoded)."""
    from PIL import Image

    from embedding.image import MobileNetEmbedder
    from embedding.joint.augment import reshoot
    from niteru.model_config import image_config
    from niteru.photos import read_photo

    images: list[Image.Image] = []
    where: list[int] = []
    for n, ref in enumerate(refs):
        try:
            with Image.open(io.BytesIO(read_photo(ref, settings))) as img:
                images.append(reshoot(img, rng))
            where.append(n)
        except (Refusal, OSError, ValueError) as exc:
            log.debug("joint: photo %s not re-shot: %s", ref, exc)
    out: list[np.ndarray | None] = [None] * len(refs)
    if not images:
        return out
    model = image_model() if image_model is not None else MobileNetEmbedder(image_config(settings)).load()
    result = model.embed_sources(images)
    for row, index in enumerate(result.indices):
        out[where[index]] = result.vectors[row]
    return out
