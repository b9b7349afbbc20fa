"""The joint model at serving time: numpy only. ``JointEmbedder(config).load(text_version)``, then
``embed(image_vectors, text_vectors)``.

The network is ``normalise(W2 relu(W1 [image; text] + b1) + b2)``, the same arithmetic as the Keras model
it was trained as (``embedding.joint.train.build_network``); a test checks the two agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedding.joint.artifact import JointArtifact, load_artifact
from embedding.joint.config import JointConfig


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: np.ndarray = (x / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def forward(arrays: dict[str, np.ndarray], image: np.ndarray, text: np.ndarray) -> np.ndarray:
    x = np.concatenate([np.asarray(image, np.float32), np.asarray(text, np.float32)], axis=1)
    h = np.maximum(x @ arrays["w1"] + arrays["b1"], 0.0)
    return l2_normalise(h @ arrays["w2"] + arrays["b2"])


class JointEmbedder:
    """Thread-safe after ``load`` (read-only arrays)."""

    def __init__(self, config: JointConfig) -> None:
        self.config = config
        self.version = ""
        self.text_version = ""
        self.meta: dict[str, Any] = {}
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return int(self._arrays["w2"].shape[1])

    @property
    def input_dims(self) -> tuple[int, int]:
        return int(self.meta["image_dim"]), int(self.meta["text_dim"])

    def load(self, text_version: str) -> JointEmbedder:
        """The joint model trained on the vectors of text model ``text_version``
        (``JointModelMissingError`` when there is none)."""
        return self.attach(load_artifact(self.config.model_dir, text_version))

    def attach(self, artifact: JointArtifact) -> JointEmbedder:
        self._arrays = artifact.arrays
        self.meta = artifact.meta
        self.version = artifact.version
        self.text_version = str(artifact.meta["text_model_version"])
        return self

    def embed(self, image: np.ndarray, text: np.ndarray) -> np.ndarray:
        """(n, dim) L2-normalised vectors of n products' image (n, 1024) and text (n, 256) vectors."""
        image, text = np.atleast_2d(image), np.atleast_2d(text)
        if (image.shape[1], text.shape[1]) != self.input_dims:
            raise ValueError(f"joint model takes {self.input_dims} vectors, got {(image.shape[1], text.shape[1])}")
        return forward(self._arrays, image, text)
