"""Hostile images cost little: refused on the header, decoded reduced, 16-bit kept in integers, and
at most ``image_max_concurrent_decodes`` decoding at once."""

from __future__ import annotations

import io
import threading
import tracemalloc
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from embedding.image import preprocess
from embedding.image.errors import ImageTooLargeError
from embedding.image.preprocess import decode, limit_concurrent_decodes, prepare_image
from niteru.settings import Settings


def png_header_only(width: int, height: int, bit_depth: int = 16) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` grey pixels (a compressed all-zero body)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    row = b"\0" * (1 + width * bit_depth // 8)
    body = zlib.compress(row * min(height, 16), 9)  # truncated: only the header matters
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([bit_depth, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


@pytest.fixture
def restore_gate() -> Iterator[None]:
    yield
    limit_concurrent_decodes(preprocess.DEFAULT_CONCURRENT_DECODES)


def test_the_default_pixel_limit_refuses_a_6300_px_16_bit_png_on_its_header() -> None:
    data = png_header_only(6300, 6300)
    assert len(data) < 100_000
    with pytest.raises(ImageTooLargeError):
        prepare_image(data, max_pixels=Settings().image_max_pixels)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale() -> None:
    big = encoded(Image.new("RGB", (3000, 2000), (200, 10, 10)), "JPEG")
    image = decode(big, 16_000_000, size=224)
    assert image.size == (375, 250)  # 1/8 of each side: the full 6 M pixels never existed
    assert prepare_image(big).shape == (224, 224, 3)


def test_a_large_16_bit_image_never_becomes_a_float64_array() -> None:
    ramp = np.tile(np.linspace(0, 65535, 3000).astype(np.uint16), (3000, 1))
    data = encoded(Image.fromarray(ramp), "PNG")
    tracemalloc.start()
    try:
        out = prepare_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (224, 224, 3)
    assert out[112, 0, 0] < 30 and out[112, 223, 0] > 225  # still scaled, not clipped
    assert peak < 8 * 1024 * 1024, f"{peak} bytes of arrays for a {3000 * 3000 * 2}-byte image"


def test_at_most_the_configured_number_of_decodes_run_at_once(
    monkeypatch: pytest.MonkeyPatch, restore_gate: None
) -> None:
    limit_concurrent_decodes(2)
    inside, most, lock = 0, 0, threading.Lock()
    two_inside, release = threading.Event(), threading.Event()
    real = preprocess.decode

    def counting(data: bytes, max_pixels: int, size: int = 0) -> Image.Image:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
            if inside >= 2:
                two_inside.set()
        release.wait(10)
        with lock:
            inside -= 1
        return real(data, max_pixels, size)

    monkeypatch.setattr(preprocess, "decode", counting)
    data = encoded(Image.new("RGB", (32, 32), (1, 2, 3)), "PNG")
    threads = [threading.Thread(target=prepare_image, args=(data,)) for _ in range(6)]
    for t in threads:
        t.start()
    assert two_inside.wait(10)
    release.set()
    for t in threads:
        t.join(10)
    assert most == 2
