"""Preprocessing: every image mode becomes 224x224 RGB; bad input gets a typed error naming its reason."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedding.image.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
)
from embedding.image.preprocess import prepare_image


def encode(image: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def red_square_on_wide_canvas() -> Image.Image:
    """A 400x200 white canvas with a 100x100 red square in the middle."""
    img = Image.new("RGB", (400, 200), "white")
    img.paste((255, 0, 0), (150, 50, 250, 150))
    return img


def red_box(array: np.ndarray) -> tuple[int, int]:
    """Width and height of the red region in a prepared array."""
    red = (array[..., 0] > 200) & (array[..., 1] < 60) & (array[..., 2] < 60)
    rows, cols = np.where(red)
    return int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)


def test_pad_keeps_aspect_ratio_and_whole_image() -> None:
    out = prepare_image(encode(red_square_on_wide_canvas()), resize="pad")
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    w, h = red_box(out)
    assert abs(w - h) <= 2, "padding must not distort: the square stays square"
    assert w == pytest.approx(56, abs=2)  # 100 px of 400 -> 56 of 224
    assert out[0, 112].tolist() == [255, 255, 255], "letterbox bands are white"


def test_stretch_distorts_and_crop_fills() -> None:
    stretched = prepare_image(encode(red_square_on_wide_canvas()), resize="stretch")
    w, h = red_box(stretched)
    assert h == pytest.approx(2 * w, abs=3)
    cropped = prepare_image(encode(red_square_on_wide_canvas()), resize="crop")
    w, h = red_box(cropped)
    assert w == h == pytest.approx(112, abs=2)  # centre 200x200 crop, scaled by 224/200


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (80, 40), "white")
    img.paste((255, 0, 0), (0, 0, 40, 40))  # red on the left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    out = prepare_image(data, resize="stretch")
    # After rotating 90 degrees clockwise, the left half becomes the top half.
    assert out[:100, :, 0].mean() > 200 and out[:100, :, 1].mean() < 80
    assert out[124:, :, 1].mean() > 200


@pytest.mark.parametrize(
    ("mode", "colour"),
    [("L", 128), ("P", None), ("CMYK", (0, 255, 255, 0)), ("RGBA", (255, 0, 0, 255))],
)
def test_modes_convert_to_rgb(mode: str, colour: int | tuple[int, ...] | None) -> None:
    img = Image.new(mode, (64, 64), colour) if colour is not None else Image.new("RGB", (64, 64), "blue").convert("P")
    out = prepare_image(encode(img, "TIFF" if mode == "CMYK" else "PNG"))
    assert out.shape == (224, 224, 3)


def test_transparency_is_flattened_on_white() -> None:
    img = Image.new("RGBA", (64, 64), (255, 0, 0, 0))  # fully transparent red
    img.paste((0, 0, 255, 255), (16, 16, 48, 48))
    out = prepare_image(encode(img))
    assert out[5, 5].tolist() == [255, 255, 255]
    assert out[112, 112].tolist() == [0, 0, 255]


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    data = encode(Image.fromarray(ramp))
    out = prepare_image(data, resize="stretch")
    assert out[0, 0, 0] < 20 and out[-1, -1, 0] > 235
    assert 100 < out[112, 112, 0] < 160, "mid-grey stays mid-grey (a clipped conversion would be white)"


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    out = prepare_image(buf.getvalue())
    assert out[112, 112, 0] > 200 and out[112, 112, 1] < 60


def test_empty_bytes() -> None:
    with pytest.raises(EmptyImageError) as err:
        prepare_image(b"")
    assert err.value.reason == "empty"


def test_text_file_renamed_jpg(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_text("this is not a picture\n")
    with pytest.raises(NotAnImageError) as err:
        prepare_image(path)
    assert err.value.reason == "not_an_image"


def test_truncated_jpeg() -> None:
    data = encode(Image.new("RGB", (300, 300), "green"), "JPEG")
    with pytest.raises(CorruptImageError) as err:
        prepare_image(data[: len(data) // 3])
    assert err.value.reason == "corrupt"


def test_corrupt_png_body() -> None:
    data = bytearray(encode(Image.effect_noise((128, 128), 64).convert("RGB")))
    data[200:400] = bytes(200)  # damage the compressed stream, keep the header
    with pytest.raises(CorruptImageError):
        prepare_image(bytes(data))


def test_one_pixel_image_is_too_small() -> None:
    with pytest.raises(ImageTooSmallError) as err:
        prepare_image(encode(Image.new("RGB", (1, 1))))
    assert "1x1" in str(err.value)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # 6000x6000 of one colour compresses to a few KB of PNG but is 36 M pixels.
    data = encode(Image.new("L", (6000, 6000), 0))
    assert len(data) < 200_000
    with pytest.raises(ImageTooLargeError) as err:
        prepare_image(data, max_pixels=10_000_000)
    assert err.value.reason == "too_large"


def test_too_many_bytes() -> None:
    with pytest.raises(ImageTooLargeError):
        prepare_image(encode(Image.effect_noise((64, 64), 64)), max_bytes=1000)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError):
        prepare_image(tmp_path / "nope.jpg")
