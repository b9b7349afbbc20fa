"""Image URLs: http(s) to public hosts only, unless a host is explicitly allowed."""

from __future__ import annotations

import pytest

from niteru.fetch import UnsafeUrlError, check_url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/a.jpg",
        "http://localhost/a.jpg",
        "http://10.1.2.3/a.jpg",
        "http://192.168.0.10/a.jpg",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata endpoint
        "http://[::1]/a.jpg",
        "http://[::ffff:127.0.0.1]/a.jpg",
        "http://0.0.0.0/a.jpg",
    ],
)
def test_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError, match="internal address"):
        check_url(url)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.jpg", "gopher://x/", "/images/a.jpg"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError, match="only http and https"):
        check_url(url)


def test_public_address_and_allowed_host_pass() -> None:
    assert check_url("https://93.184.216.34/a.jpg") == "https://93.184.216.34/a.jpg"  # a literal: no DNS needed
    assert check_url("http://127.0.0.1:9/a.jpg", allow_hosts=["127.0.0.1"]) == "http://127.0.0.1:9/a.jpg"
