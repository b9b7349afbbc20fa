"""Image bytes from the three sources a client may give: an upload, a URL, a catalog path.

Every source is capped at ``api_max_upload_bytes`` (413 above). Decoding problems are left to the image
model's ``prepare`` (typed ``ImageError``s, mapped to 415/413/422).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import httpx
from fastapi import UploadFile

from api.errors import ApiError
from niteru.fetch import UnsafeUrlError, check_url
from niteru.settings import Settings

CHUNK = 64 * 1024
MAX_REDIRECTS = 3
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
    """GET an image URL with a timeout and the size cap (blocking: call it off the event loop).

    Only http(s) URLs of public hosts (or hosts in ``image_fetch_allow_hosts``) are fetched, and each
    redirect hop is checked again, so a client cannot make the service reach internal addresses.
    """
    limit = settings.api_max_upload_bytes
    try:
        with httpx.Client(timeout=settings.image_fetch_timeout, follow_redirects=False) as client:
            for _hop in range(MAX_REDIRECTS + 1):
                check_url(url, settings.image_fetch_allow_hosts)
                with client.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = str(response.url.join(response.headers["location"]))
                        continue
                    if response.status_code != 200:
                        raise ApiError(422, f"image_url answered HTTP {response.status_code}")
                    return _read_capped(response, limit)
            raise ApiError(422, f"image_url redirected more than {MAX_REDIRECTS} times")
    except UnsafeUrlError as exc:
        raise ApiError(422, f"image_url refused: {exc}") from None
    except httpx.HTTPError as exc:
        raise ApiError(422, f"could not fetch image_url: {type(exc).__name__}: {exc}") from exc


def _read_capped(response: httpx.Response, limit: int) -> bytes:
    declared = int(response.headers.get("content-length") or 0)
    if declared > limit:
        raise _too_large(limit)
    buffer = _CappedBuffer(limit)
    for chunk in response.iter_bytes(CHUNK):
        buffer.add(chunk)
    return buffer.value()


def read_catalog_path(relative: str, settings: Settings) -> bytes:
    """Bytes of an image inside the configured catalog folder; a path escaping it is refused.

    The check is on the path as written (no absolute path, no ``..``): symlinks the catalog's owner put
    inside the folder are followed, a client cannot climb out of it.
    """
    rel = PurePosixPath(relative)
    if not relative.strip() or rel.is_absolute() or ".." in rel.parts or "\\" in relative:
        raise ApiError(422, f"image_path {relative!r} must be a relative path inside the catalog folder")
    path = settings.catalog_dir / rel
    if not path.is_file():
        raise ApiError(422, f"image_path {relative!r} does not exist in the catalog folder")
    if path.stat().st_size > settings.api_max_upload_bytes:
        raise _too_large(settings.api_max_upload_bytes)
    return Path(path).read_bytes()
