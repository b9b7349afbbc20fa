"""The API key: required by the write endpoints, and by the reads when ``api_reads_require_key`` is set.

The key comes in ``X-API-Key`` or ``Authorization: Bearer <key>`` and is compared in constant time.
With no ``api_key`` configured the writes are open (the demo and a private network need no key) and
``warn_if_open`` says so loudly at start-up, as Qdrant does. The probes, ``/metrics`` and the web page's
own files are always open; the page sends the key the user types in.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from niteru.settings import Settings

log = logging.getLogger(__name__)

# auto_error=False: a missing key is our 401 with a {"detail": ...} body, not FastAPI's 403.
_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key (NITERU_API_KEY).")
_bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token.")

KeyHeader = Annotated[str | None, Security(_key_header)]
Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


def warn_if_open(settings: Settings) -> None:
    if settings.api_key is None:
        log.warning(
            "NITERU_API_KEY is not set: anyone who can reach this API can create and delete products. "
            "Set it before exposing the service beyond a trusted network."
        )


def _check(settings: Settings, key: str | None, bearer: HTTPAuthorizationCredentials | None, what: str) -> None:
    expected = settings.api_key
    if expected is None:
        return
    given = key if key is not None else (bearer.credentials if bearer is not None else None)
    # compare_digest on bytes: constant time whatever the characters; a missing key compares too.
    if not hmac.compare_digest((given or "").encode(), expected.get_secret_value().encode()) or given is None:
        detail = f"{what} need a valid API key in X-API-Key or Authorization: Bearer"
        raise ApiError(401, detail, headers={"WWW-Authenticate": 'Bearer realm="niteru"'})


def require_write(request: Request, key: KeyHeader, bearer: Bearer) -> None:
    """Dependency of the endpoints that change the store."""
    _check(request.app.state.settings, key, bearer, "writes")


def require_read(request: Request, key: KeyHeader, bearer: Bearer) -> None:
    """Dependency of the reads: open unless ``api_reads_require_key``."""
    settings: Settings = request.app.state.settings
    if settings.api_reads_require_key:
        _check(settings, key, bearer, "reads")
