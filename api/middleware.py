"""Two small ASGI middlewares: a ``Server-Timing`` header, and a JSON 413 for a declared oversize body.

The use cases wrap their model and store calls in ``niteru.timing.timed(...)`` blocks; the sums per
request go into the header (milliseconds), which is what the latency benchmark breaks down.

The body cap itself is FastAPI's ``max_body_size`` (it also stops a chunked body mid-stream, as a JSON
413); ``ContentLengthLimitMiddleware`` answers a too-large ``Content-Length`` before a byte is read, with
our ``{"detail": ...}`` body instead of Starlette's plain-text one.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import send_json
from niteru.timing import request_timings


class ServerTimingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with request_timings() as bucket:
            t0 = time.perf_counter()

            async def timing_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    bucket["total"] = time.perf_counter() - t0
                    value = ", ".join(f"{k};dur={v * 1000:.2f}" for k, v in bucket.items())
                    message["headers"] = [*message.get("headers", []), (b"server-timing", value.encode())]
                await send(message)

            await self.app(scope, receive, timing_send)


class ContentLengthLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = dict(scope.get("headers") or []).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                await send_json(send, 413, f"request body is over the limit of {self.max_body_bytes} bytes")
                return
        await self.app(scope, receive, send)
