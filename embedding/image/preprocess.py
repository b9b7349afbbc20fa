"""Turn encoded image bytes into the 224x224 RGB uint8 array MobileNet expects.

Steps, in order: size checks on the encoded bytes; Pillow decode with a deliberate pixel limit
(checked on the header, before any pixel is decoded), JPEGs decoded straight at a reduced scale
(``draft``: a large photo never exists at full size in memory); the first frame of an animated image;
other formats reduced by an integer factor right after decoding (``Image.reduce``); EXIF orientation;
any mode to 8-bit RGB (transparency flattened on white, 16-bit scaled rather than clipped, in integers);
square by padding, cropping or stretching (``ImageConfig.resize``); resize to 224x224.
MobileNet's own ``preprocess_input`` (x / 127.5 - 1) is applied inside the model, on the batch.

Decoding is the memory-hungry step, so decodes run on a small pool of threads of their own, at most
``limit_concurrent_decodes(n)`` at once in a process (the service sizes it from
``image_max_concurrent_decodes``); further callers wait their turn.
"""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
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
DEFAULT_CONCURRENT_DECODES = 2
# EXIF orientation -> the transposition that shows the image upright (as ImageOps.exif_transpose does).
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def limit_concurrent_decodes(n: int) -> None:
    """At most ``n`` images decode at once in this process (callers beyond that wait their turn).

    Decodes run on ``n`` dedicated threads rather than on the callers' threads: the memory an image
    needed is then reused by the next decode on the same thread (the allocator keeps one arena per
    thread), instead of staying parked in the arenas of dozens of request threads.
    """
    global _pool
    if n < 1:
        raise ValueError(f"at least one decode must be allowed, got {n}")
    with _pool_lock:
        old, _pool = _pool, ThreadPoolExecutor(n, thread_name_prefix="niteru-decode")
    if old is not None:
        old.shutdown(wait=False)  # decodes already queued there still finish


def _decoder() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(DEFAULT_CONCURRENT_DECODES, thread_name_prefix="niteru-decode")
        return _pool


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


def decode(data: bytes, max_pixels: int, size: int = 0) -> Image.Image:
    """Decode bytes into a fully loaded Pillow image (first frame), with our own bomb limit.

    With ``size``, a JPEG is decoded at the smallest DCT scale still at least ``size`` px on each side.
    """
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
            if size and image.format == "JPEG":
                image.draft("RGB" if image.mode in ("RGB", "YCbCr") else image.mode, (size, size))
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


def reduce_to(image: Image.Image, size: int) -> Image.Image:
    """Shrink by the largest integer factor that keeps the shorter side at ``size`` px or more."""
    factor = min(image.size) // size
    if factor < 2:
        return image
    try:
        return image.reduce(factor)
    except ValueError:  # 16-bit modes: reduce() refuses them, a box resize is the same average
        pass
    try:
        return image.resize((image.size[0] // factor, image.size[1] // factor), Image.Resampling.BOX)
    except ValueError:  # a mode neither knows: the final resize still gets there
        return image


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1: upright); broken EXIF must not cost a good picture."""
    with contextlib.suppress(OSError, ValueError, SyntaxError, TypeError, KeyError):
        return int(image.getexif().get(0x0112, 1))
    return 1


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: transparency on white, 16-bit and float scaled to 0..255."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Converting these straight to RGB clips every value above 255 to white; scale instead, rounding
        # to nearest, in integers (a float64 copy of a large 16-bit image costs four times its pixels).
        array = np.asarray(image)
        if image.mode == "F":
            array = np.nan_to_num(array.astype(np.float32, copy=False), nan=0.0, posinf=65535.0, neginf=0.0)
        top = 65535 if image.mode.startswith("I;16") or array.max() > 255 else 255
        wide = np.clip(array, 0, top).astype(np.uint32)
        image = Image.fromarray(((wide * 255 + top // 2) // top).astype(np.uint8))
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
    max_pixels: int = 16_000_000,
    max_bytes: int = 10 * 1024 * 1024,
    min_side: int = 8,
) -> np.ndarray:
    """One image source to a (size, size, 3) uint8 array, or a typed ``ImageError``."""
    if isinstance(source, Image.Image):
        return _to_array(source, size, resize, min_side)
    data = read_image_bytes(source, max_bytes)
    return _decoder().submit(_decode_to_array, data, max_pixels, size, resize, min_side).result()


def _decode_to_array(data: bytes, max_pixels: int, size: int, resize: ResizeMode, min_side: int) -> np.ndarray:
    return _to_array(decode(data, max_pixels, size), size, resize, min_side)


def _to_array(image: Image.Image, size: int, resize: ResizeMode, min_side: int) -> np.ndarray:
    if min(image.size) < min_side:
        raise ImageTooSmallError(f"{image.size[0]}x{image.size[1]} is below {min_side} px on a side")
    turn = ORIENTATIONS.get(orientation(image))
    image = reduce_to(image, size)
    if turn is not None:
        image = image.transpose(turn)
    image = to_square(to_rgb(image), resize, size)
    return np.asarray(image, dtype=np.uint8)
