"""Image bytes from the three sources a client may give: an upload, a URL, a catalog path.

Every source is capped at ``api_max_upload_bytes`` (413 above). Decoding problems are left to the image
model's ``prepare`` (typed ``ImageError``s, mapped to 415/413/422).
"""

from __future__ import annotations

from fastapi import UploadFile

from api.errors import ApiError
from niteru import fetch
from niteru.settings import Settings

CHUNK = 64 * 1024
# Declared types we accept for an upload; anything else (text/plain, application/pdf...) is 415 unread.
# application/octet-stream is what many clients send when they do not know; the bytes decide then.
ACCEPTED_UPLOAD_TYPES = ("image/", "application/octet-stream")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the image is over the limit of {limit} bytes")


class _CappedBuffer:
    """Chunks joined up to ``limit`` bytes; one more byte is a 413, before it is kept in memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise _too_large(self.limit)
        self.parts.append(chunk)

    def value(self) -> bytes:
        return b"".join(self.parts)


async def read_upload(file: UploadFile, settings: Settings) -> bytes:
    """The bytes of an uploaded file, refusing a declared non-image type and anything over the cap."""
    declared = (file.content_type or "application/octet-stream").lower()
    if not declared.startswith(ACCEPTED_UPLOAD_TYPES):
        raise ApiError(415, f"content type {declared!r} is not an image")
    buffer = _CappedBuffer(settings.api_max_upload_bytes)
    while chunk := await file.read(CHUNK):
        buffer.add(chunk)
    return buffer.value()


def fetch_url(url: str, settings: Settings) -> bytes:
    """GET an image URL (see ``niteru.fetch.fetch_url``); blocking: call it off the event loop."""
    try:
        return fetch.fetch_url(url, settings)
    except fetch.ImageSourceError as exc:
        raise ApiError(exc.status, exc.message) from None


def read_catalog_path(relative: str, settings: Settings) -> bytes:
    """Bytes of an image inside the configured catalog folder (see ``niteru.fetch.read_image_path``)."""
    try:
        return fetch.read_image_path(relative, settings)
    except fetch.ImageSourceError as exc:
        raise ApiError(exc.status, exc.message) from None
