"""Running the converted MobileNet on LiteRT (``ai-edge-litert``, XNNPACK): what serving processes use.

Imports only numpy and LiteRT, never TensorFlow. The network's input side is fixed at conversion; its batch
side is set here, once per batch shape: each shape in ``BATCH_SHAPES`` gets its own interpreter, resized
and allocated at load, so no call ever re-allocates. A batch of n images is run as the largest shapes
that fit, then smaller ones, never padded (padding would compute images nobody asked for).
"""

from __future__ import annotations

import os
import threading

import numpy as np

from embedding.image.config import ImageConfig

# The batch sizes an interpreter is prepared for. XNNPACK's images/s hardly depends on the batch on this
# network, while each larger shape holds a larger activation arena: 1 for a query photo, 8 for the rest.
BATCH_SHAPES = (1, 8)


def split(n: int, shapes: tuple[int, ...]) -> list[int]:
    """n as a sum of the shapes, largest first (1 is always among them, so it always adds up)."""
    parts = []
    for shape in sorted(shapes, reverse=True):
        parts += [shape] * (n // shape)
        n %= shape
    return parts


class LiteRTForward:
    """One interpreter per batch shape; calls are serialised (an interpreter is not re-entrant)."""

    def __init__(self, config: ImageConfig) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from embedding.image.convert import check

        path, _meta = check(config.block, config.size, config.precision)
        model = path.read_bytes()
        threads = config.threads or os.cpu_count() or 1
        self.size = config.size
        self.shapes = BATCH_SHAPES
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
