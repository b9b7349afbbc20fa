"""Image URLs: http(s) to public hosts only (unless a host and port are allowed), one deadline per fetch.

The servers here are real HTTP servers on 127.0.0.1 (allowed by host and port where a test fetches).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from niteru import fetch
from niteru.fetch import UnsafeUrlError, check_url, fetch_url
from niteru.refusals import Refusal
from niteru.settings import Settings

Handler = Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def serve(handle: Handler) -> Iterator[int]:
    """A threaded HTTP server on 127.0.0.1 answering every GET with ``handle``; yields its port."""

    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            handle(self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def settings_for(tmp_path: Path, *allow: str, timeout: float = 5.0) -> Settings:
    return Settings(data_dir=tmp_path, image_fetch_allow_hosts=list(allow), image_fetch_timeout=timeout)


def redirect_to(location: str) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return handle


def image(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "4")
    h.end_headers()
    h.wfile.write(b"\x89PNG")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/a.jpg",
        "http://localhost/a.jpg",
        "http://10.1.2.3/a.jpg",
        "http://192.168.0.10/a.jpg",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata endpoint
        "http://100.100.100.200/latest/meta-data/",  # shared address space (a cloud's metadata service)
        "http://[::1]/a.jpg",
        "http://[::ffff:127.0.0.1]/a.jpg",
        "http://[2002:7f00:1::]/a.jpg",  # 6to4 of 127.0.0.1
        "http://[2002:a9fe:a9fe::]/a.jpg",  # 6to4 of 169.254.169.254
        "http://[64:ff9b::a9fe:a9fe]/a.jpg",  # NAT64 of 169.254.169.254
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/a.jpg",  # Teredo
        "http://224.0.0.1/a.jpg",
        "http://0.0.0.0/a.jpg",
    ],
)
def test_every_address_that_is_not_global_is_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError) as refused:
        check_url(url)
    assert "127.0.0.1" not in str(refused.value) and "169.254" not in str(refused.value)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.jpg", "gopher://x/", "/images/a.jpg"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError, match="only http and https"):
        check_url(url)


def test_public_address_and_allowed_host_and_port_pass() -> None:
    public = check_url("https://93.184.216.34/a.jpg")  # a literal: no DNS needed
    assert str(public.address) == "93.184.216.34" and public.port == 443
    assert check_url("http://127.0.0.1:9/a.jpg", allow_hosts=["127.0.0.1"]).port == 9  # a bare host: any port
    assert check_url("http://127.0.0.1:9/a.jpg", allow_hosts=["127.0.0.1:9"]).port == 9
    with pytest.raises(UnsafeUrlError):
        check_url("http://127.0.0.1:10/a.jpg", allow_hosts=["127.0.0.1:9"])  # the port is part of the entry


def test_a_redirect_to_an_internal_address_is_refused_without_naming_it(tmp_path: Path) -> None:
    with serve(redirect_to("http://100.64.0.1/meta")) as port, pytest.raises(Refusal) as refused:
        fetch_url(f"http://127.0.0.1:{port}/a.png", settings_for(tmp_path, "127.0.0.1", timeout=1.0))
    assert refused.value.reason == "unsafe_url"
    assert "100.64" not in refused.value.message


def test_a_redirect_to_an_invalid_port_is_a_refusal(tmp_path: Path) -> None:
    with serve(redirect_to("http://127.0.0.1:99999/a.png")) as port, pytest.raises(Refusal) as refused:
        fetch_url(f"http://127.0.0.1:{port}/a.png", settings_for(tmp_path, "127.0.0.1"))
    assert refused.value.reason == "unsafe_url"


def test_redirects_are_followed_to_an_allowed_host(tmp_path: Path) -> None:
    with serve(image) as target, serve(redirect_to(f"http://127.0.0.1:{target}/b.png")) as port:
        allowed = settings_for(tmp_path, f"127.0.0.1:{port}", f"127.0.0.1:{target}")
        assert fetch_url(f"http://127.0.0.1:{port}/a.png", allowed) == b"\x89PNG"
        only_first = settings_for(tmp_path, f"127.0.0.1:{port}")
        with pytest.raises(Refusal, match="unsafe_url"):
            fetch_url(f"http://127.0.0.1:{port}/a.png", only_first)


def test_the_connection_goes_to_the_address_that_was_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the check sees a public address, a second answer would point at loopback."""
    answers = iter(["192.0.2.1", "127.0.0.1", "127.0.0.1"])  # TEST-NET-1 stands in for a public host
    real = socket.getaddrinfo

    def rebinding(host: str, *args: object, **kwargs: object) -> object:
        if host == "images.test":
            return real(next(answers), *args, **kwargs)  # type: ignore[arg-type]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(fetch, "is_public", lambda ip: str(ip) == "192.0.2.1")  # the test's "public" address
    seen: list[str] = []

    def record(h: BaseHTTPRequestHandler) -> None:
        seen.append(h.headers["Host"])
        image(h)

    with serve(record) as port, pytest.raises(Refusal, match="fetch_failed"):
        fetch_url(f"http://images.test:{port}/a.png", settings_for(tmp_path, timeout=1.0))
    assert seen == []  # the loopback server was never reached


def test_a_trickling_server_cannot_hold_a_fetch_past_its_deadline(tmp_path: Path) -> None:
    stop = threading.Event()

    def trickle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        while not stop.wait(0.5):  # a byte every half second, well inside any per-read timeout
            h.wfile.write(b"x")
            h.wfile.flush()

    with serve(trickle) as port:
        t0 = time.monotonic()
        with pytest.raises(Refusal) as refused:
            fetch_url(f"http://127.0.0.1:{port}/a.png", settings_for(tmp_path, "127.0.0.1", timeout=1.0))
        elapsed = time.monotonic() - t0
        stop.set()
    assert refused.value.reason == "fetch_failed" and refused.value.transient
    assert elapsed < 1.4, elapsed


def test_the_deadline_covers_name_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real = socket.getaddrinfo

    def hung(host: str, *args: object, **kwargs: object) -> object:
        if host == "slow-dns.test":
            release.wait(30)  # a resolver that does not answer
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", hung)
    t0 = time.monotonic()
    try:
        with pytest.raises(Refusal, match="fetch_failed"):
            fetch_url("http://slow-dns.test/a.png", settings_for(tmp_path, timeout=0.5))
    finally:
        release.set()
    assert time.monotonic() - t0 < 0.9
