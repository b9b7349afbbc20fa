"""Which image URLs the service may fetch, and the fetch itself: http(s) only, never an internal address.

A shop sends image URLs; fetching them blindly would let anyone make the service (or a worker) reach
internal hosts: the metadata endpoint of a cloud VM, an admin port on loopback, a database on the
private network. So, for every hop (redirects are followed here, one at a time):

- the host is resolved once, and every address must be *global* (``ipaddress``'s ``is_global``: this
  refuses private, loopback, link-local, shared 100.64.0.0/10, reserved, multicast and documentation ranges, and
  IPv6 forms that embed such an IPv4 address: mapped, 6to4, Teredo, NAT64), unless ``host:port`` (or the
  bare host, any port) is listed in ``image_fetch_allow_hosts``;
- the connection goes to the address that was checked (the URL is rewritten to it; the ``Host`` header
  and the TLS server name stay the original host), so a second DNS answer cannot move it (DNS rebinding);
- one wall-clock deadline (``image_fetch_timeout``) covers the whole fetch: DNS, connections, every
  redirect and the body, so a server trickling bytes cannot hold a fetch past it.

Refusals are generic: they never name the address a host resolved to.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import anyio
import httpx

from niteru.refusals import Refusal
from niteru.settings import Settings

ALLOWED_SCHEMES = ("http", "https")
CHUNK = 64 * 1024
MAX_REDIRECTS = 3
# Statuses worth retrying later (the image host is busy or down), as opposed to a 404 that stays a 404.
# Every failure to read an image is a ``Refusal``: transient when trying again later may work.
TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}
REDIRECTS = {301, 302, 303, 307, 308}
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
    """A URL the service refuses to fetch; the message is safe to show (it names no address)."""


def is_public(ip: IpAddress) -> bool:
    """Global, and so is any IPv4 address the IPv6 form carries (mapped, 6to4, Teredo, NAT64)."""
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        if ip in ipaddress.ip_network("64:ff9b::/96"):
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return all(e is None or e.is_global for e in embedded)
    return True


@dataclass(frozen=True)
class Target:
    """A URL that passed the check, and the address to connect to."""

    url: SplitResult
    host: str
    port: int
    address: IpAddress

    def pinned_url(self) -> str:
        """The URL with the checked address in place of the host name."""
        literal = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return urlunsplit(self.url._replace(netloc=f"{literal}:{self.port}"))

    def host_header(self) -> str:
        literal = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.url.scheme == "https" else 80
        return literal if self.port == default else f"{literal}:{self.port}"


def _allowed(host: str, port: int, allow_hosts: Collection[str]) -> bool:
    entries = {h.strip().lower() for h in allow_hosts}
    literal = f"[{host}]" if ":" in host else host
    return host in entries or literal in entries or f"{literal}:{port}" in entries


def _resolve(host: str, port: int, deadline: float) -> list[IpAddress]:
    """The host's addresses, waiting at most until ``deadline`` (a hung resolver is left behind)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    answer: list[object] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            answer.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name="niteru-resolve", daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise Refusal("fetch_failed", "image_url: the host did not resolve in time", transient=True)
    result = answer[0]
    if isinstance(result, BaseException) or not isinstance(result, list) or not result:
        raise UnsafeUrlError("cannot resolve the image host")
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in result]


def check_url(url: str, allow_hosts: Collection[str] = (), deadline: float | None = None) -> Target:
    """The checked target of ``url`` (the address to connect to), else ``UnsafeUrlError``."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeUrlError("only http and https image URLs are fetched")
    try:
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        raise UnsafeUrlError("the image URL has an invalid port") from None
    if not host:
        raise UnsafeUrlError("the image URL has no host")
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    addresses = _resolve(host, port, time.monotonic() + 30.0 if deadline is None else deadline)
    if not _allowed(host, port, allow_hosts) and not all(is_public(a) for a in addresses):
        raise UnsafeUrlError("the image host is not a public address")
    return Target(parts._replace(scheme=parts.scheme.lower()), host, port, addresses[0])


def fetch_url(url: str, settings: Settings) -> bytes:
    """GET an image URL within one deadline (``image_fetch_timeout``) and the size cap; blocking.

    Every failure is a ``Refusal``: ``unsafe_url`` for what the guard refuses (generic, no address),
    ``fetch_failed`` (transient) for a host that is slow, down or breaks the transfer.
    """
    deadline = time.monotonic() + settings.image_fetch_timeout
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            target = check_url(url, settings.image_fetch_allow_hosts, deadline)
            status, location, body = anyio.run(_get, target, settings.api_max_upload_bytes, deadline)
            if status in REDIRECTS and location is not None:
                url = urljoin(urlunsplit(target.url), location)
                continue
            if status != 200:
                raise Refusal(
                    f"http_{status}", f"image_url answered HTTP {status}", transient=status in TRANSIENT_STATUSES
                )
            return body
        raise Refusal("too_many_redirects", f"image_url redirected more than {MAX_REDIRECTS} times")
    except UnsafeUrlError as exc:
        raise Refusal("unsafe_url", f"image_url refused: {exc}") from None
    except TimeoutError:
        raise Refusal("fetch_failed", "image_url took longer than the fetch deadline", transient=True) from None
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:  # refused, reset, malformed answer
        raise Refusal("fetch_failed", f"could not fetch image_url ({type(exc).__name__})", transient=True) from None


async def _get(target: Target, limit: int, deadline: float) -> tuple[int, str | None, bytes]:
    """One GET to the checked address: status, redirect location and the capped body."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    with anyio.fail_after(remaining):
        async with httpx.AsyncClient(timeout=remaining, follow_redirects=False, trust_env=False) as client:
            request = client.build_request("GET", target.pinned_url(), headers={"Host": target.host_header()})
            if target.url.scheme == "https":
                request.extensions["sni_hostname"] = target.host
            response = await client.send(request, stream=True)
            try:
                if response.status_code in REDIRECTS:
                    return response.status_code, response.headers.get("location"), b""
                if response.status_code != 200:
                    return response.status_code, None, b""
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise _too_large(limit)
                buffer = CappedBuffer(limit)  # stops reading at the cap, whatever the header said
                async for chunk in response.aiter_bytes(CHUNK):
                    buffer.add(chunk)
                return 200, None, buffer.value()
            finally:
                await response.aclose()


def catalog_path(relative: str, settings: Settings) -> Path:
    """The file of an image path inside the configured catalog folder; a path escaping it is refused.

    The check is on the path as written (no absolute path, no ``..``): symlinks the catalog's owner put
    inside the folder are followed, a caller cannot climb out of it.
    """
    rel = PurePosixPath(relative)
    if not relative.strip() or rel.is_absolute() or ".." in rel.parts or "\\" in relative or "\0" in relative:
        raise Refusal("bad_path", f"image_path {relative[:200]!r} must be a relative path inside the catalog folder")
    path = settings.catalog_dir / rel
    try:
        found = path.is_file()
    except OSError:  # a name too long for the file system, say: no such image either way
        found = False
    if not found:
        raise Refusal("not_found", f"image_path {relative[:200]!r} does not exist in the catalog folder")
    return Path(path)


def read_image_path(relative: str, settings: Settings) -> bytes:
    """Bytes of an image inside the configured catalog folder (``catalog_path``), within the size cap."""
    path = catalog_path(relative, settings)
    try:
        if path.stat().st_size > settings.api_max_upload_bytes:
            raise _too_large(settings.api_max_upload_bytes)
        return Path(path).read_bytes()
    except OSError:
        raise Refusal("not_found", f"image_path {relative[:200]!r} cannot be read from the catalog folder") from None
