"""MobileNet v1 feature extractor: ``load()`` once, then batch ``embed()``.

The network is Keras's ``MobileNet(alpha=1.0, include_top=False)`` with ImageNet weights, cut at a
pointwise block (the final one by default) and global-average pooled: a float32 vector per image,
L2-normalised so that a dot product is the cosine similarity.

The service runs it converted to LiteRT (``runtime.py``, XNNPACK, no TensorFlow in the process); the Keras
network it is converted from (``keras_net.py``) stays available as the reference. Decoding of the next
batch can run in threads while the model works on the current one (Pillow releases the GIL while
decoding and resizing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from embedding.image.config import ImageConfig
from embedding.image.errors import ImageError
from embedding.image.network_io import l2_normalize, to_network_input
from embedding.image.preprocess import ImageSource, prepare_image

log = logging.getLogger(__name__)

# Channels of each pointwise block of MobileNet v1 at alpha 1.0.
BLOCK_CHANNELS = {
    1: 64,
    2: 128,
    3: 128,
    4: 256,
    5: 256,
    **dict.fromkeys(range(6, 12), 512),
    12: 1024,
    13: 1024,
}


@dataclass
class BatchResult:
    """Vectors for the images that could be read, and a typed error for each that could not.

    ``vectors[i]`` belongs to input ``indices[i]``; ``errors`` maps an input index to its error.
    """

    vectors: np.ndarray
    indices: list[int]
    errors: dict[int, ImageError] = field(default_factory=dict)

    def vector_for(self, index: int) -> np.ndarray | None:
        if index not in self.indices:
            return None
        row: np.ndarray = self.vectors[self.indices.index(index)]
        return row


Backend = Literal["litert", "keras"]


class MobileNetEmbedder:
    """ImageNet MobileNet v1 without its classifier. Thread-safe after ``load()``.

    ``backend="litert"`` (the service's) runs the converted model on LiteRT and imports no TensorFlow;
    ``backend="keras"`` runs the Keras network it was converted from (conversion checks, benchmarks).
    Both give the same vectors, so they share ``version``.
    """

    def __init__(self, config: ImageConfig | None = None, backend: Backend = "litert") -> None:
        self.config = config or ImageConfig()
        self.backend = backend
        self.dim = BLOCK_CHANNELS[self.config.block]
        self.version = f"mobilenet_v1_1.0_224-imagenet-block{self.config.block}-{self.config.resize}"
        if self.config.precision != "fp32":
            # int8 changes the vectors a little: its vectors must not pass for fp32 ones in the store.
            self.version += f"-{self.config.precision}"
        self._forward: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def loaded(self) -> bool:
        return self._forward is not None

    def load(self) -> MobileNetEmbedder:
        """Load the prepared model (never from the network); raises ``WeightsMissingError`` if it is not."""
        if self._forward is not None:
            return self
        if self.backend == "keras":
            from embedding.image.keras_net import KerasForward  # TensorFlow lives behind this import

            self._forward = KerasForward(self.config)
        else:
            from embedding.image.runtime import LiteRTForward

            self._forward = LiteRTForward(self.config)
        self.embed(np.zeros((1, self.config.size, self.config.size, 3), np.uint8))  # warm up, off the hot path
        log.info("loaded MobileNet v1 block %d (%d-d) on %s", self.config.block, self.dim, self.backend)
        return self

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(n, 224, 224, 3) uint8 prepared images to (n, dim) float32 L2-normalised vectors."""
        if self._forward is None:
            raise RuntimeError("MobileNetEmbedder.load() has not been called")
        images = np.asarray(images)
        side = self.config.size
        if images.ndim != 4 or images.shape[1:] != (side, side, 3):
            raise ValueError(f"expected (n, {side}, {side}, 3), got {images.shape}")
        if len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        out: list[np.ndarray] = []
        step = self.config.batch_size
        for start in range(0, len(images), step):
            out.append(self._forward(to_network_input(images[start : start + step])))
        return l2_normalize(np.concatenate(out))

    def prepare(self, source: ImageSource) -> np.ndarray:
        c = self.config
        return prepare_image(
            source, size=c.size, resize=c.resize, max_pixels=c.max_pixels, max_bytes=c.max_bytes, min_side=c.min_side
        )

    def embed_one(self, source: ImageSource) -> np.ndarray:
        """One image's vector (a query photo); a bad image raises its typed ``ImageError``."""
        vector: np.ndarray = self.embed(self.prepare(source)[None])[0]
        return vector

    def iter_batches(self, sources: Sequence[ImageSource]) -> Iterator[BatchResult]:
        """Decode and embed in batches of ``batch_size``.

        With ``decode_threads`` > 0, decoding of batch i+1 runs in threads while the model works on
        batch i. On few cores with small catalog images that contends with TensorFlow's own threads and is
        slower (bench/image_throughput.py), so the default is 0: decode inline, then run the model.
        """
        step = self.config.batch_size
        chunks = [sources[i : i + step] for i in range(0, len(sources), step)]
        if self.config.decode_threads == 0:
            for n, chunk in enumerate(chunks):
                yield self._embed_prepared(n * step, [self._prepare_or_error(s) for s in chunk])
            return
        with ThreadPoolExecutor(self.config.decode_threads) as pool, ThreadPoolExecutor(1) as ahead:
            pending = ahead.submit(lambda c: list(pool.map(self._prepare_or_error, c)), chunks[0]) if chunks else None
            for n in range(len(chunks)):
                assert pending is not None
                prepared = pending.result()
                if n + 1 < len(chunks):
                    pending = ahead.submit(lambda c: list(pool.map(self._prepare_or_error, c)), chunks[n + 1])
                yield self._embed_prepared(n * step, prepared)

    def _prepare_or_error(self, source: ImageSource) -> np.ndarray | ImageError:
        try:
            return self.prepare(source)
        except ImageError as exc:
            return exc

    def _embed_prepared(self, offset: int, prepared: list[np.ndarray | ImageError]) -> BatchResult:
        good = [i for i, p in enumerate(prepared) if not isinstance(p, ImageError)]
        errors = {offset + i: p for i, p in enumerate(prepared) if isinstance(p, ImageError)}
        arrays = [p for p in prepared if not isinstance(p, ImageError)]
        vectors = self.embed(np.stack(arrays)) if arrays else np.zeros((0, self.dim), np.float32)
        return BatchResult(vectors, [offset + i for i in good], errors)

    def embed_sources(self, sources: Sequence[ImageSource]) -> BatchResult:
        """Bytes, paths or Pillow images to vectors; a bad item is reported, never sinks the batch."""
        parts = list(self.iter_batches(sources))
        if not parts:
            return BatchResult(np.zeros((0, self.dim), np.float32), [])
        return BatchResult(
            np.concatenate([p.vectors for p in parts]),
            [i for p in parts for i in p.indices],
            {k: v for p in parts for k, v in p.errors.items()},
        )
