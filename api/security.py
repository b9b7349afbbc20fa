"""The API key: required by the write endpoints, and by the reads when ``api_reads_require_key`` is set.

The key comes in ``X-API-Key`` or ``Authorization: Bearer <key>`` and is compared in constant time.
With no ``api_key`` configured the writes are open (the demo and a private network need no key) and
``warn_if_open`` says so loudly at start-up, as Qdrant does. The probes, ``/metrics`` and the web page's
own files are always open; the page sends the key the user types in.

``KeyBeforeBodyMiddleware`` checks the key of a route that needs one before the route reads its body:
without it, FastAPI parses (and may refuse as malformed) a JSON or multipart body before its
dependencies run, so an anonymous caller could make the service read megabytes and learn how its
bodies are checked. The routes' own dependencies still check, and document, the 401.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ApiError, send_json
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


def _refusal(settings: Settings, given: str | None, what: str) -> str | None:
    """Why ``given`` does not open the ``what`` (None: it does, or no key is configured)."""
    expected = settings.api_key
    if expected is None:
        return None
    # compare_digest on bytes: constant time whatever the characters; a missing key compares too.
    if not hmac.compare_digest((given or "").encode(), expected.get_secret_value().encode()) or given is None:
        return f"{what} need a valid API key in X-API-Key or Authorization: Bearer"
    return None


def _check(settings: Settings, key: str | None, bearer: HTTPAuthorizationCredentials | None, what: str) -> None:
    given = key if key is not None else (bearer.credentials if bearer is not None else None)
    detail = _refusal(settings, given, what)
    if detail is not None:
        raise ApiError(401, detail, headers={"WWW-Authenticate": 'Bearer realm="niteru"'})


# The two dependencies are coroutines only so that FastAPI runs them on the event loop: a plain function
# would be sent to a worker thread and back on every request, for a comparison of two strings.
async def require_write(request: Request, key: KeyHeader, bearer: Bearer) -> None:
    """Dependency of the endpoints that change the store."""
    _check(request.app.state.settings, key, bearer, "writes")


async def require_read(request: Request, key: KeyHeader, bearer: Bearer) -> None:
    """Dependency of the reads: open unless ``api_reads_require_key``."""
    settings: Settings = request.app.state.settings
    if settings.api_reads_require_key:
        _check(settings, key, bearer, "reads")


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any] | None]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _given_key(scope: Scope) -> str | None:
    headers = dict(scope.get("headers") or [])
    if b"x-api-key" in headers:
        return str(headers[b"x-api-key"].decode("latin-1"))
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class KeyBeforeBodyMiddleware:
    """A 401 for a route needing the key, before any of the body is read (see the module docstring).

    ``routers`` are the app's routers: which of their routes need the key is read from their dependencies
    (``require_write``, ``require_read``), so the routes stay the one place that says it."""

    def __init__(self, app: ASGIApp, routers: Sequence[APIRouter]) -> None:
        self.app = app
        self.guarded: list[tuple[APIRoute, str]] = []
        for router in routers:
            for route in router.routes:
                if isinstance(route, APIRoute):
                    calls = set(_calls(route.dependant))
                    if require_write in calls:
                        self.guarded.append((route, "writes"))
                    elif require_read in calls:
                        self.guarded.append((route, "reads"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in ("POST", "PUT", "PATCH", "DELETE"):
            detail = self._refusal(scope)
            if detail is not None:
                await send_json(send, 401, detail, [(b"www-authenticate", b'Bearer realm="niteru"')])
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> str | None:
        settings: Settings | None = getattr(getattr(scope.get("app"), "state", None), "settings", None)
        if settings is None or settings.api_key is None:
            return None
        for route, what in self.guarded:
            if scope["method"] in (route.methods or ()) and route.path_regex.match(scope.get("path", "")):
                if what == "writes" or settings.api_reads_require_key:
                    return _refusal(settings, _given_key(scope), what)
                return None
        return None
