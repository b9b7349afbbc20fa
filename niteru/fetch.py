"""Which image URLs the service may fetch: http(s) only, and never an internal address.

A shop sends image URLs; fetching them blindly would let anyone make the service (or a worker) reach
internal hosts: the metadata endpoint of a cloud VM, an admin port on loopback, a database on the
private network. So a URL's host is resolved first and refused when any address it resolves to is
private, loopback, link-local, multicast, reserved or unspecified, unless the host is listed in the
``image_fetch_allow_hosts`` setting (a local test server, an internal image CDN). Redirects are
followed by the caller one hop at a time, each hop checked again.

What this does not stop: DNS rebinding between this check and the connection. Deployments that need
that closed put the fetcher behind an egress proxy.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import httpx

from niteru.refusals import Refusal
from niteru.settings import Settings

ALLOWED_SCHEMES = ("http", "https")
CHUNK = 64 * 1024
MAX_REDIRECTS = 3
# Statuses worth retrying later (the image host is busy or down), as opposed to a 404 that stays a 404.
# Every failure to read an image is a ``Refusal``: transient when trying again later may work.
TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}


def _too_large(limit: int) -> Refusal:
    return Refusal("too_large", f"the image is over the limit of {limit} bytes")


class CappedBuffer:
    """Chunks joined up to ``limit`` bytes; one more byte raises ``too_large`` before it is kept."""

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


class UnsafeUrlError(ValueError):
    """A URL the service refuses to fetch; the message says why."""


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


def check_url(url: str, allow_hosts: Collection[str] = ()) -> str:
    """Return ``url`` when it may be fetched, else raise ``UnsafeUrlError``."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeUrlError(f"only http and https image URLs are fetched, not {parts.scheme or 'no scheme'!r}")
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeUrlError("the image URL has no host")
    if host in {h.lower() for h in allow_hosts}:
        return url
    try:
        infos = socket.getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrlError(f"cannot resolve image host {host!r}: {exc}") from None
    internal = sorted({str(info[4][0]) for info in infos if _is_internal(str(info[4][0]))})
    if internal:
        raise UnsafeUrlError(
            f"image host {host!r} resolves to an internal address ({', '.join(internal)}); "
            "list it in NITERU_IMAGE_FETCH_ALLOW_HOSTS to allow it"
        )
    return url


def fetch_url(url: str, settings: Settings) -> bytes:
    """GET an image URL with a timeout and the size cap (``api_max_upload_bytes``); blocking.

    Only http(s) URLs of public hosts (or hosts in ``image_fetch_allow_hosts``) are fetched, and each
    redirect hop is checked again, so a caller cannot make the service or a worker reach internal hosts.
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
                        raise Refusal(
                            f"http_{response.status_code}",
                            f"image_url answered HTTP {response.status_code}",
                            transient=response.status_code in TRANSIENT_STATUSES,
                        )
                    return _read_capped(response, limit)
            raise Refusal("too_many_redirects", f"image_url redirected more than {MAX_REDIRECTS} times")
    except UnsafeUrlError as exc:
        raise Refusal("unsafe_url", f"image_url refused: {exc}") from None
    except httpx.HTTPError as exc:  # timeouts, refused connections, broken transfers
        raise Refusal(
            "fetch_failed", f"could not fetch image_url: {type(exc).__name__}: {exc}", transient=True
        ) from exc


def _read_capped(response: httpx.Response, limit: int) -> bytes:
    declared = int(response.headers.get("content-length") or 0)
    if declared > limit:
        raise _too_large(limit)
    buffer = CappedBuffer(limit)  # stops reading at the cap, whatever the header said
    for chunk in response.iter_bytes(CHUNK):
        buffer.add(chunk)
    return buffer.value()


def catalog_path(relative: str, settings: Settings) -> Path:
    """The file of an image path inside the configured catalog folder; a path escaping it is refused.

    The check is on the path as written (no absolute path, no ``..``): symlinks the catalog's owner put
    inside the folder are followed, a caller cannot climb out of it.
    """
    rel = PurePosixPath(relative)
    if not relative.strip() or rel.is_absolute() or ".." in rel.parts or "\\" in relative:
        raise Refusal("bad_path", f"image_path {relative!r} must be a relative path inside the catalog folder")
    path = settings.catalog_dir / rel
    if not path.is_file():
        raise Refusal("not_found", f"image_path {relative!r} does not exist in the catalog folder")
    return Path(path)


def read_image_path(relative: str, settings: Settings) -> bytes:
    """Bytes of an image inside the configured catalog folder (``catalog_path``), within the size cap."""
    path = catalog_path(relative, settings)
    if path.stat().st_size > settings.api_max_upload_bytes:
        raise _too_large(settings.api_max_upload_bytes)
    return Path(path).read_bytes()
