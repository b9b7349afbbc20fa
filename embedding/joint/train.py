"""Training the joint model with Keras (TensorFlow is imported here only, inside the functions).

Input per product: its image and text vectors, a label (the shop's subcategory, else its category), and a
second view of the product (the vectors of a re-shot photo and a re-written title, or feature noise where no
photo could be re-shot). The loss, per batch of B products with outputs ``a`` (originals) and ``b`` (views):

- instance: InfoNCE of ``a`` against ``b``, each product must pick its own view among the batch's;
- label: supervised contrastive over ``a``, products of one label attract;
- structure: the squared error of ``a``'s cosines against the raw cosines of (image + text)/2, so what makes
  products look alike in the raw vectors (colour, pattern) survives the projection.

The weights are exported as plain arrays (``embedding.joint.model.forward`` computes the same in numpy).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from embedding.joint.config import JointConfig

log = logging.getLogger(__name__)


def build_network(image_dim: int, text_dim: int, config: JointConfig) -> Any:
    import keras

    inputs = keras.Input((image_dim + text_dim,), name="image_text")
    hidden = keras.layers.Dense(config.hidden, activation="relu", name="w1")(inputs)
    out = keras.layers.Dense(config.dim, name="w2")(hidden)
    return keras.Model(inputs, keras.layers.UnitNormalization(name="normalise")(out), name="joint")


def export(network: Any) -> dict[str, np.ndarray]:
    w1, b1 = network.get_layer("w1").get_weights()
    w2, b2 = network.get_layer("w2").get_weights()
    return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}


def label_ids(labels: Sequence[str]) -> np.ndarray:
    index: dict[str, int] = {}
    return np.asarray([index.setdefault(label, len(index)) for label in labels], np.int32)


def train_joint(
    image: np.ndarray,
    text: np.ndarray,
    labels: Sequence[str],
    view_image: np.ndarray,
    view_text: np.ndarray,
    reshot: np.ndarray,
    config: JointConfig,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train on n products; returns the exported arrays and what the artifact records about the run.
    ``reshot`` (n,) bool: the view's image vector is a re-shot photo (else it gets feature noise)."""
    import keras
    import tensorflow as tf

    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    n = len(labels)
    x = np.concatenate([image, text], axis=1).astype(np.float32)
    xv = np.concatenate([view_image, view_text], axis=1).astype(np.float32)
    y = label_ids(labels)
    noisy = (~np.asarray(reshot, bool)).astype(np.float32)[:, None]
    image_dim = image.shape[1]
    network = build_network(image_dim, text.shape[1], config)
    optimizer = keras.optimizers.Adam(config.lr)
    tau = config.temperature

    # TensorFlow ships no type hints.
    @tf.function  # type: ignore[untyped-decorator]
    def step(xb: Any, xvb: Any, yb: Any, noisyb: Any) -> Any:
        noise = tf.random.normal(tf.shape(xvb), stddev=config.noise) * noisyb
        raw_image = tf.math.l2_normalize(xb[:, :image_dim], axis=1)
        raw_text = tf.math.l2_normalize(xb[:, image_dim:], axis=1)
        raw = 0.5 * (
            tf.matmul(raw_image, raw_image, transpose_b=True) + tf.matmul(raw_text, raw_text, transpose_b=True)
        )
        with tf.GradientTape() as tape:
            a = network(xb, training=True)
            b = network(xvb + noise, training=True)
            size = tf.shape(a)[0]
            eye = tf.eye(size)
            pair = tf.matmul(a, b, transpose_b=True) / tau
            targets = tf.range(size)
            instance = 0.5 * (
                tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, pair))
                + tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.transpose(pair)))
            )
            cos = tf.matmul(a, a, transpose_b=True)
            logits = cos / tau - eye * 1e9  # never oneself
            log_prob = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)
            same = tf.cast(tf.equal(yb[:, None], yb[None, :]), tf.float32) * (1.0 - eye)
            count = tf.reduce_sum(same, axis=1)
            per_anchor = -tf.reduce_sum(same * log_prob, axis=1) / tf.maximum(count, 1.0)
            has = tf.cast(count > 0, tf.float32)
            label = tf.reduce_sum(per_anchor * has) / tf.maximum(tf.reduce_sum(has), 1.0)
            off = 1.0 - eye
            structure = tf.reduce_sum(tf.square(cos - raw) * off) / tf.reduce_sum(off)
            loss = instance + config.label_weight * label + config.structure_weight * structure
        grads = tape.gradient(loss, network.trainable_variables)
        optimizer.apply_gradients(zip(grads, network.trainable_variables, strict=True))
        return tf.stack([loss, instance, label, structure])

    rng = np.random.default_rng(config.seed)
    last = np.zeros(4)
    for epoch in range(config.epochs):
        order = rng.permutation(n)
        parts = []
        for i in range(0, n - 1, config.batch_size):
            idx = order[i : i + config.batch_size]
            if len(idx) < 2:
                continue
            parts.append(step(x[idx], xv[idx], y[idx], noisy[idx]).numpy())
        last = np.mean(parts, axis=0)
        log.info("joint epoch %d: loss %.3f (instance %.3f, label %.3f, structure %.4f)", epoch + 1, *last)
    meta = {
        **config.params(),
        "image_dim": int(image_dim),
        "text_dim": int(text.shape[1]),
        "dim": config.dim,
        "products": n,
        "labels": int(y.max() + 1) if n else 0,
        "reshot": int(np.sum(reshot)),
        "final_loss": {k: float(v) for k, v in zip(("total", "instance", "label", "structure"), last, strict=True)},
        "train_s": round(time.perf_counter() - started, 2),
        "libraries": {"keras": keras.__version__, "tensorflow": tf.__version__},
    }
    return export(network), meta
