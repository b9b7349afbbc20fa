"""Running the converted MobileNet on LiteRT (``ai-edge-litert``, XNNPACK): what serving processes use.

Imports only numpy and LiteRT, never TensorFlow. The network's input side is fixed at conversion; its batch
side is set here, once per batch shape: each shape (``BATCH_SHAPES`` by default) gets its own interpreter,
resized and allocated at load, so no call ever re-allocates. A batch of n images is run as the largest
shapes that fit, then smaller ones, never padded (padding would compute images nobody asked for).
"""

from __future__ import annotations

import os
import threading

import numpy as np

from embedding.image.config import ImageConfig

# The batch sizes an interpreter is prepared for. XNNPACK's images/s on this network is the same at batch 1
# as at 8 or 32, while every further shape costs its own interpreter: its own packed copy of the weights and
# a larger activation arena (bench/image_throughput.py measures both). So one shape: a batch runs as
# single-image calls, with no padding and no re-allocation.
BATCH_SHAPES: tuple[int, ...] = (1,)


def split(n: int, shapes: tuple[int, ...]) -> list[int]:
    """n as a sum of the shapes, largest first (1 is always among them, so it always adds up)."""
    parts = []
    for shape in sorted(shapes, reverse=True):
        parts += [shape] * (n // shape)
        n %= shape
    return parts


class LiteRTForward:
    """One interpreter per batch shape; calls are serialised (an interpreter is not re-entrant)."""

    def __init__(self, config: ImageConfig, shapes: tuple[int, ...] = BATCH_SHAPES) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from embedding.image.convert import check

        path, _meta = check(config.block, config.size, config.precision)
        model = path.read_bytes()
        threads = config.threads or os.cpu_count() or 1
        self.size = config.size
        if 1 not in shapes:
            raise ValueError(f"batch shapes {shapes} must include 1, so that any batch adds up")
        self.shapes = shapes
        self._interpreters = {}
        for shape in self.shapes:
            interpreter = Interpreter(model_content=model, num_threads=threads)
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, [shape, config.size, config.size, 3], strict=False)
            interpreter.allocate_tensors()
            self._interpreters[shape] = interpreter
        self._lock = threading.Lock()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) float32 in [-1, 1] to (n, dim) float32 pooled features."""
        out = []
        start = 0
        with self._lock:
            for shape in split(len(images), self.shapes):
                interpreter = self._interpreters[shape]
                interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images[start : start + shape])
                interpreter.invoke()
                out.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy())
                start += shape
        return np.concatenate(out)
