"""Errors of the API and their HTTP statuses; every error body is ``{"detail": ...}``.

Every status a route can answer is in its OpenAPI ``responses`` (``ERRORS`` for the ``/v1`` routes,
``ALWAYS`` for the others). Unavailable parts (503) answer a generic message: what went wrong (a server
URL, the command line of the process holding the store) goes to the log, with the request id, never to
the caller. Anything unexpected is a logged JSON 500 (``CatchAllMiddleware``), never a plain-text page.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedding.image.errors import ImageError
from niteru.logs import request_id_var
from niteru.refusals import Refusal, field_reason, from_embedding
from niteru.similar import UnknownProductError
from niteru.store import StoreError

log = logging.getLogger(__name__)

Responses = dict[int | str, dict[str, Any]]
# What any route may answer, whatever it does: a declared body over the cap, and the unexpected.
ALWAYS: Responses = {
    413: {"description": "Request body over the size limit"},
    500: {"description": "Unexpected error (logged with the request id)"},
}
ERRORS: Responses = {
    401: {"description": "Missing or wrong API key"},
    404: {"description": "Unknown product"},
    409: {
        "description": "A newer image of this product is stored; or mode=joint before a rebuild trained the joint model"
    },
    413: {"description": "Image or request body over the size limit"},
    415: {"description": "Not an image"},
    422: {"description": "Invalid input: parameters, fields, or a malformed body"},
    500: ALWAYS[500],
    503: {"description": "Store or model unavailable (try again later)"},
}


class ApiError(Exception):
    """An HTTP-level error with its status (a bad parameter, a missing part of the service), turned into
    ``{"detail": ...}``. What the core refuses is a ``niteru.refusals.Refusal``, rendered the same way."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


class ServiceUnavailableError(ApiError):
    """A part of the service is missing. ``detail`` ("store unavailable: <why>") is logged; the caller gets
    only the part ("store unavailable")."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, re.split(r"[:(]", detail, maxsplit=1)[0].strip())
        self.private = detail


def _json(status: int, detail: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _unavailable(what: str, why: object) -> JSONResponse:
    log.warning("%s: %s", what, why)
    request_id = request_id_var.get()
    return _json(503, f"{what}; try again later (request id {request_id})")


def _plain(value: object) -> object:
    """A JSON-safe copy of a validation error's value (NaN, inf, bytes and exceptions made strings)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's list of errors (type, loc, msg), each body field's with the core's reason code; the
    input is not echoed (it may be megabytes, or NaN)."""
    out = []
    for error in errors:
        entry = {"type": str(error.get("type", "")), "loc": _plain(error.get("loc", ())), "msg": str(error.get("msg"))}
        loc = tuple(error.get("loc") or ())
        if len(loc) >= 2 and loc[0] == "body" and isinstance(loc[1], str):
            entry["reason"] = field_reason(error)
        out.append(entry)
    return out


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        if isinstance(exc, ServiceUnavailableError):
            return _unavailable(exc.detail, exc.private)
        return _json(exc.status, exc.detail, exc.headers)

    async def refusal(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refusal)
        if exc.reason == "store_unavailable":
            return _unavailable("store unavailable", exc.message)
        return _json(exc.status, exc.detail)

    async def image_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ImageError)  # a search image the model refused
        return await refusal(request, from_embedding(exc))

    async def unknown_product(_: Request, exc: Exception) -> JSONResponse:
        return _json(404, str(exc))

    async def store_error(_: Request, exc: Exception) -> JSONResponse:
        return _unavailable("store unavailable", exc)

    async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _json(422, validation_errors(exc.errors()))

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 400:  # a body the parser could not read (broken multipart): invalid input
            return _json(422, f"malformed request body: {exc.detail}")
        return _json(exc.status_code, exc.detail, dict(exc.headers or {}) or None)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(Refusal, refusal)
    app.add_exception_handler(ImageError, image_error)
    app.add_exception_handler(UnknownProductError, unknown_product)
    app.add_exception_handler(StoreError, store_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)


async def send_json(send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """A ``{"detail": ...}`` answer from an ASGI middleware (outside FastAPI's handlers)."""
    body = json.dumps({"detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class CatchAllMiddleware:
    """The unexpected (an engine's bare ``Exception``, a client library's own error type): logged with the
    request id, answered as a JSON 500. Placed inside the request-id middleware, so the answer carries it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if scope["type"] != "http" or started:  # a lifespan failure, or the status is sent: nothing to add
                raise
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            await send_json(send, 500, f"internal error (request id {request_id_var.get()})")
