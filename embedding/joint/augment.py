"""Variants of a product as a shop might list it again: a re-shot photo and a re-written title.

Training pairs each product with such a variant so that the joint vector keeps a product and its
variants together (a label-only objective would pull every product of a subcategory to one point).
Deterministic for a given ``numpy.random.Generator``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image


def reshoot(image: Image, rng: np.random.Generator) -> Image:
    """A crop of 80-95 % of the frame, maybe mirrored, turned by up to 8 degrees, 0.8-1.2x as bright."""
    from PIL import ImageEnhance, ImageOps

    img = image.convert("RGB")
    w, h = img.size
    scale = rng.uniform(0.80, 0.95)
    cw, ch = max(1, int(w * scale)), max(1, int(h * scale))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = img.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        img = ImageOps.mirror(img)
    img = img.rotate(float(rng.uniform(-8, 8)), expand=False, fillcolor=(255, 255, 255))
    return ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.8, 1.2)))


def rewrite(text: str, rng: np.random.Generator) -> str:
    """The title's words in another order and maybe without the first (often the brand); the description
    (after the first line) kept."""
    title, _, rest = text.partition("\n")
    words = title.split()
    if len(words) > 2 and rng.random() < 0.5:
        words = words[1:]
    if len(words) > 1:
        i, j = rng.choice(len(words), size=2, replace=False)
        words[i], words[j] = words[j], words[i]
    return " ".join(words) + (f"\n{rest}" if rest else "")
