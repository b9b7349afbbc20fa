"""The image's HEALTHCHECK: exit 0 when the API answers ``/healthz`` on its port, 1 otherwise.

The slim image has no curl. The port comes from the settings (``NITERU_API_PORT`` or ``.env``), so the
probe follows the server wherever it is configured to listen; it always asks over the loopback, which a
server bound to 0.0.0.0 answers too.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from niteru.settings import Settings


def probe(port: int, timeout: float = 4.0) -> bool:
    # No proxy: an http_proxy set in the container must not turn a loopback probe into a proxy request.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main() -> int:
    return 0 if probe(Settings().api_port) else 1


if __name__ == "__main__":
    sys.exit(main())
