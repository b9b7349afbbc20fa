"""Small copies of the photos the service could not read again: uploads and images fetched from a URL.

The rebuild's look-alike work needs each product's photo: the joint model's re-shot views, the routing
fit's re-listed variants and the gate's sample (``niteru.lookalike``). A catalog photo is read again from
``catalog_dir``; an upload is not kept anywhere, and a URL is not fetched again (slow, and the shop's
server may have changed or dropped it). Without a copy, a store filled through the API got no variant
measures at all: the fit chose by precision alone and the gate passed unchecked.

So a write that read an image from an upload or a URL keeps a copy (``keep_photos``): the photo scaled to
at most ``PHOTO_SIDE`` pixels (MobileNet sees 224), JPEG, a few KB, under ``<data_dir>/photos/``, named by
a digest of the product's image reference (an upload's reference is the digest of its bytes; a URL's copy
is replaced when the URL is written again). The copy is written after the product was stored and is
best-effort: a failure is logged and the write stands. The rebuild removes the copies no product refers
to any more (``prune_photos``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from niteru.fetch import read_image_path
from niteru.refusals import Refusal
from niteru.settings import Settings

log = logging.getLogger(__name__)
PHOTO_SIDE = 256


def photos_dir(settings: Settings) -> Path:
    return settings.data_dir / "photos"


def is_kept(ref: str) -> bool:
    """Whether a photo of this reference is kept here (uploads and URLs), not read from the catalog."""
    return ref.startswith("upload:") or "://" in ref


def photo_path(settings: Settings, ref: str) -> Path:
    digest = hashlib.sha256(ref.encode()).hexdigest()
    return photos_dir(settings) / digest[:2] / f"{digest}.jpg"


def keep_photo(settings: Settings, ref: str, data: bytes) -> None:
    """Write the small copy of ``data`` (already decoded once by the image model) for ``ref``; logs a
    failure, never raises."""
    if not settings.keep_photos or not is_kept(ref):
        return
    from PIL import Image, ImageOps

    path = photo_path(settings, ref)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            photo = ImageOps.exif_transpose(opened).convert("RGB")
        photo.thumbnail((PHOTO_SIDE, PHOTO_SIDE))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                photo.save(f, format="JPEG", quality=90)
            Path(tmp).replace(path)  # a reader sees the old copy or the new one, never half of one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except (OSError, ValueError) as exc:  # a full disk, or an image PIL reads otherwise than the model did
        log.warning("photo of %s not kept: %s", ref[:200], exc)


def has_photo(ref: str, settings: Settings) -> bool:
    """Whether ``read_photo`` may find the photo (a catalog path is only checked when read)."""
    return not is_kept(ref) or photo_path(settings, ref).is_file()


def read_photo(ref: str, settings: Settings) -> bytes:
    """A product's photo for the look-alike work: its kept copy, or the catalog file. ``Refusal`` when
    there is neither."""
    if not is_kept(ref):
        return read_image_path(ref, settings)
    try:
        return photo_path(settings, ref).read_bytes()
    except OSError:
        raise Refusal("not_found", f"no kept photo of {ref[:200]!r}") from None


def prune_photos(settings: Settings, refs: Iterable[str], started: float) -> int:
    """Remove the copies of references no product has (``refs``: every stored product's image), except
    those written since ``started`` (a write that came in meanwhile). Returns how many went."""
    root = photos_dir(settings)
    if not root.is_dir():
        return 0
    wanted = {photo_path(settings, r).name for r in refs if is_kept(r)}
    removed = 0
    for path in root.glob("*/*.jpg"):
        try:
            if path.name not in wanted and path.stat().st_mtime < started:
                path.unlink()
                removed += 1
        except OSError:  # removed by another rebuild's prune meanwhile
            continue
    return removed
