"""Request ids and request metrics, as two small ASGI middlewares.

``RequestIdMiddleware`` takes ``X-Request-ID`` from the request when it is short and plain, or makes
one; it is returned as a response header and set in ``niteru.logs.request_id_var`` for the request's
log lines and for the tasks it enqueues.

``MetricsMiddleware`` observes each request's latency labelled by the route *template* (never the raw
path, whose product ids would make a time series per product) and the retrieval mode.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from niteru.logs import new_request_id, request_id_var, valid_request_id
from niteru.metrics import get_metrics
from niteru.routing import Mode

REQUEST_ID_HEADER = b"x-request-id"
SIMILAR_ROUTE = "/v1/products/{product_id}/similar"
# Routes whose mode is fixed by the route itself.
FIXED_MODES = {"/v1/search/image": "image", "/v1/search/text": "text"}
_MODES = {m.value for m in Mode}
_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER)
        request_id = valid_request_id(given.decode("latin-1") if given else None) or new_request_id()
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def route_template(scope: Scope) -> str:
    """The matched route's path template, e.g. ``/v1/products/{product_id}``; ``<unmatched>`` for a 404."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else "<unmatched>"


def request_mode(route: str, query_string: bytes) -> str:
    """auto/image/text/hybrid for the retrieval routes, ``-`` for the others (a bounded label)."""
    if route in FIXED_MODES:
        return FIXED_MODES[route]
    if route != SIMILAR_ROUTE:
        return "-"
    given = parse_qs(query_string.decode("latin-1")).get("mode", [Mode.auto.value])[-1]
    return given if given in _MODES else "-"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client sees when the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router writes the matched route into this same scope dict, so it is known here.
            route = route_template(scope)
            mode = request_mode(route, scope.get("query_string", b""))
            method = scope["method"] if scope["method"] in _METHODS else "other"
            get_metrics().requests.labels(route, mode, method, str(status)).observe(time.perf_counter() - start)
