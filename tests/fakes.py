"""Fake embedders for tests where the embedder is not under test: small, deterministic, no weights.

They are subclasses of the real embedders so they type-check wherever ``Embedders`` is expected, but
they override every member the service calls and never touch TensorFlow or fastText. They take the
service's ``Settings`` and do not call the real constructors: the fakes depend on what the service
calls, not on how the real models are configured.

- ``FakeImageEmbedder`` decodes with the real ``prepare_image`` (same limits as production, from the
  settings), so an empty, corrupt, oversized or non-image input fails with the same typed ``ImageError``;
  the vector is the image's mean colour in each quarter plus each quarter's contrast (16-d), L2-normalised.
  The same photo gives the same vector (cosine 1), different photos differ.
- ``FakeTextEmbedder`` hashes the real tokenizer's words into 32 buckets (counts), L2-normalised; a text
  without a word gives the zero vector, as the real model does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from embedding.image.errors import ImageError
from embedding.image.model import BatchResult, MobileNetEmbedder
from embedding.image.preprocess import ImageSource, prepare_image
from embedding.text.model import TextEmbedder
from embedding.text.tokenize import tokenize
from niteru.embedders import Embedders
from niteru.settings import Settings

IMAGE_DIM = 16
TEXT_DIM = 32


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: np.ndarray = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0).astype(np.float32)
    return out


class FakeImageEmbedder(MobileNetEmbedder):
    def __init__(self, settings: Settings) -> None:  # no super().__init__(): see the module docstring
        self.settings = settings
        self.dim = IMAGE_DIM
        self.version = f"fake-image-{IMAGE_DIM}d"

    @property
    def loaded(self) -> bool:
        return True

    def load(self) -> FakeImageEmbedder:
        return self

    def prepare(self, source: ImageSource) -> np.ndarray:
        s = self.settings
        return prepare_image(
            source,
            size=s.image_size,
            resize=s.image_resize,
            max_pixels=s.image_max_pixels,
            max_bytes=s.image_max_bytes,
            min_side=s.image_min_side,
        )

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) uint8 to (n, 16): per quarter, mean R, G, B (centred) and grey contrast."""
        x = images.astype(np.float32) / 255.0 - 0.5
        half = x.shape[1] // 2
        features = []
        for rows in (slice(0, half), slice(half, None)):
            for cols in (slice(0, half), slice(half, None)):
                quarter = x[:, rows, cols, :]
                features.append(quarter.mean(axis=(1, 2)))  # (n, 3)
                features.append(quarter.mean(axis=3).std(axis=(1, 2))[:, None])  # (n, 1)
        return _unit_rows(np.concatenate(features, axis=1))

    def embed_one(self, source: ImageSource) -> np.ndarray:
        vector: np.ndarray = self.embed(self.prepare(source)[None])[0]
        return vector

    def embed_sources(self, sources: Sequence[ImageSource]) -> BatchResult:
        prepared: list[np.ndarray] = []
        indices: list[int] = []
        errors: dict[int, ImageError] = {}
        for i, source in enumerate(sources):
            try:
                prepared.append(self.prepare(source))
                indices.append(i)
            except ImageError as exc:
                errors[i] = exc
        vectors = self.embed(np.stack(prepared)) if prepared else np.zeros((0, self.dim), np.float32)
        return BatchResult(vectors, indices, errors)


class FakeTextEmbedder(TextEmbedder):
    def __init__(self, settings: Settings) -> None:  # no super().__init__(): see the module docstring
        self.settings = settings
        self.dim = TEXT_DIM
        self.version = f"fake-text-{TEXT_DIM}d"

    @property
    def loaded(self) -> bool:
        return True

    def load(self) -> FakeTextEmbedder:
        return self

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        return [tokenize(t, max_chars=self.settings.text_max_chars) for t in texts]

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, words in enumerate(self.tokens(texts)):
            for word in words:
                bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % self.dim
                out[row, bucket] += 1.0
        return _unit_rows(out)


def fake_embedders(settings: Settings) -> Embedders:
    return Embedders(FakeImageEmbedder(settings), FakeTextEmbedder(settings))
