"""Turn encoded image bytes into the 224x224 RGB uint8 array MobileNet expects.

Steps, in order: size checks on the encoded bytes; Pillow decode with a deliberate pixel limit
(checked on the header, before any pixel is decoded); the first frame of an animated image; EXIF
orientation; any mode to 8-bit RGB (transparency flattened on white, 16-bit scaled rather than
clipped); square by padding, cropping or stretching (``ImageConfig.resize``); resize to 224x224.
MobileNet's own ``preprocess_input`` (x / 127.5 - 1) is applied inside the model, on the batch.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from embedding.image.config import ResizeMode
from embedding.image.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
)

ImageSource = bytes | Path | Image.Image

WHITE = (255, 255, 255)


def read_image_bytes(source: bytes | Path, max_bytes: int) -> bytes:
    """Bytes of an image given as bytes or a path, refusing empty and oversized input."""
    if isinstance(source, Path):
        try:
            size = source.stat().st_size
        except FileNotFoundError:
            raise ImageNotFoundError(f"no such file: {source}") from None
        if size > max_bytes:
            raise ImageTooLargeError(f"{size} bytes is over the limit of {max_bytes}")
        data = source.read_bytes()
    else:
        data = source
    if not data:
        raise EmptyImageError("no bytes")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"{len(data)} bytes is over the limit of {max_bytes}")
    return data


def decode(data: bytes, max_pixels: int) -> Image.Image:
    """Decode bytes into a fully loaded Pillow image (first frame), with our own bomb limit."""
    try:
        with warnings.catch_warnings():
            # Pillow's global MAX_IMAGE_PIXELS is process-wide state; we check our own limit on the
            # header instead and turn Pillow's warning into an error only for this call.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLargeError(f"{width}x{height} pixels is over the limit of {max_pixels}")
            image.seek(0)  # animated GIF/WebP/APNG: the first frame is the product shot
            image.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise NotAnImageError("not a recognised image format") from exc
        raise ImageTooLargeError(str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"cannot decode: {exc}") from exc
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: transparency on white, 16-bit and float scaled to 0..255."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Converting these straight to RGB clips every value above 255 to white; scale instead.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        scaled = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        image = Image.fromarray(scaled)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, WHITE)
        background.paste(image, mask=image.getchannel("A"))
        return background
    if image.mode == "CMYK":
        return image.convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def to_square(image: Image.Image, mode: ResizeMode, size: int) -> Image.Image:
    """Make the image square at ``size`` px. ``pad`` keeps the whole product and its proportions."""
    if mode == "stretch":
        return image.resize((size, size), Image.Resampling.BILINEAR)
    if mode == "crop":
        return ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR)
    return ImageOps.pad(image, (size, size), Image.Resampling.BILINEAR, color=WHITE)


def prepare_image(
    source: ImageSource,
    *,
    size: int = 224,
    resize: ResizeMode = "pad",
    max_pixels: int = 40_000_000,
    max_bytes: int = 10 * 1024 * 1024,
    min_side: int = 8,
) -> np.ndarray:
    """One image source to a (size, size, 3) uint8 array, or a typed ``ImageError``."""
    image = source if isinstance(source, Image.Image) else decode(read_image_bytes(source, max_bytes), max_pixels)
    if min(image.size) < min_side:
        raise ImageTooSmallError(f"{image.size[0]}x{image.size[1]} is below {min_side} px on a side")
    with contextlib.suppress(OSError, ValueError, SyntaxError):  # broken EXIF must not cost a good picture
        image = ImageOps.exif_transpose(image)
    image = to_square(to_rgb(image), resize, size)
    return np.asarray(image, dtype=np.uint8)
