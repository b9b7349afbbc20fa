"""What the image model needs to know, and nothing of the service that runs it.

The service builds this from its settings (``niteru.model_config.image_config``); a script or a notebook
can build one by hand. The defaults are the service's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How a non-square image becomes square: pad (letterbox on white), crop (centre crop) or stretch.
ResizeMode = Literal["pad", "crop", "stretch"]
# Arithmetic of the converted network: float32, or full-integer int8 calibrated on catalog images.
Precision = Literal["fp32", "int8"]


@dataclass(frozen=True)
class ImageConfig:
    """MobileNet v1 1.0/224 feature extraction and the input checks in front of it."""

    block: int = 13  # pointwise block whose pooled output is the vector (13: the final one, 1024-d)
    size: int = 224  # network input side; the ImageNet weights are for 224
    resize: ResizeMode = "pad"
    batch_size: int = 32  # images per forward pass
    decode_threads: int = 0  # threads decoding the next batch while the model runs; 0: decode inline
    max_pixels: int = 16_000_000  # decompression-bomb guard, checked on the header
    min_side: int = 8  # shorter side below this is refused
    max_bytes: int = 10 * 1024 * 1024  # largest encoded image accepted
    threads: int = 0  # threads of one forward pass (0: all cores)
    precision: Precision = "fp32"  # which converted LiteRT model serves
