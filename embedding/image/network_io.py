"""The steps around the network that every way of running it shares (Keras, LiteRT fp32 and int8)."""

from __future__ import annotations

import numpy as np


def to_network_input(images: np.ndarray) -> np.ndarray:
    """uint8 RGB to MobileNet's float32 range [-1, 1] (``keras.applications.mobilenet.preprocess_input``)."""
    out: np.ndarray = images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return out


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows to unit length (a zero row stays zero), so a dot product is the cosine."""
    norms = np.sqrt(np.maximum(np.sum(vectors * vectors, axis=1, keepdims=True), 1e-24))
    out: np.ndarray = (vectors / norms).astype(np.float32, copy=False)
    return out
