"""The small copies of uploaded and URL photos (``niteru.photos``) that the rebuild's look-alike work reads;
the API's writes keeping them are checked in ``test_api_fast_products.py``."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from niteru.photos import PHOTO_SIDE, keep_photo, photo_path, prune_photos, read_photo
from niteru.refusals import Refusal
from niteru.settings import Settings
from tests.fast_fixtures import photo


def big_photo(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (800, 600), colour).save(out, format="PNG")
    return out.getvalue()


def pixel(image: Image.Image) -> tuple[int, ...]:
    value = image.getpixel((10, 10))
    assert isinstance(value, tuple)
    return value


def test_an_upload_and_a_url_are_kept_small_and_read_back(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, catalog_dir=tmp_path / "catalog")
    for ref in ("upload:abc", "https://shop.example/p.png"):
        keep_photo(settings, ref, big_photo((200, 30, 30)))
        with Image.open(io.BytesIO(read_photo(ref, settings))) as kept:
            assert kept.format == "JPEG" and kept.size == (PHOTO_SIDE, PHOTO_SIDE * 3 // 4)
            assert pixel(kept)[0] > 150  # the photo's colour, not a blank
    # a URL written again with another photo: the copy follows
    keep_photo(settings, "https://shop.example/p.png", big_photo((30, 30, 200)))
    with Image.open(io.BytesIO(read_photo("https://shop.example/p.png", settings))) as kept:
        assert pixel(kept)[2] > 150


def test_a_catalog_path_is_read_from_the_catalog_and_not_copied(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", catalog_dir=tmp_path / "catalog")
    (tmp_path / "catalog" / "images").mkdir(parents=True)
    data = photo((1, 2, 3))
    (tmp_path / "catalog" / "images" / "a.png").write_bytes(data)
    keep_photo(settings, "images/a.png", data)
    assert not (tmp_path / "data" / "photos").exists()
    assert read_photo("images/a.png", settings) == data


def test_what_cannot_be_kept_is_no_error_and_reads_as_a_refusal(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    keep_photo(settings, "upload:corrupt", b"not an image at all")
    with pytest.raises(Refusal):
        read_photo("upload:corrupt", settings)
    off = Settings(data_dir=tmp_path, keep_photos=False)
    keep_photo(off, "upload:off", photo((1, 2, 3)))
    with pytest.raises(Refusal):
        read_photo("upload:off", off)


def test_prune_removes_only_old_copies_no_product_refers_to(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    for ref in ("upload:kept", "upload:gone", "upload:new"):
        keep_photo(settings, ref, photo((1, 2, 3)))
    started = time.time()
    for ref in ("upload:kept", "upload:gone"):  # written before the rebuild started
        os.utime(photo_path(settings, ref), (started - 60, started - 60))
    os.utime(photo_path(settings, "upload:new"), (started + 1, started + 1))  # a write during the rebuild

    assert prune_photos(settings, ["upload:kept", "images/catalog.jpg"], started) == 1
    assert not photo_path(settings, "upload:gone").exists()
    assert photo_path(settings, "upload:kept").exists() and photo_path(settings, "upload:new").exists()
