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
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("http", "https")


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
