"""Two small ASGI middlewares: a ``Server-Timing`` header, and a JSON 413 for a declared oversize body.

The services wrap their model and store calls in ``timed(...)`` blocks; the sums per request go into
the header (milliseconds), which is what the latency benchmark breaks down.

The body cap itself is FastAPI's ``max_body_size`` (it also stops a chunked body mid-stream, as a JSON
413); ``ContentLengthLimitMiddleware`` answers a too-large ``Content-Length`` before a byte is read, with
our ``{"detail": ...}`` body instead of Starlette's plain-text one.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import time
from collections.abc import Iterator
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from niteru.metrics import get_metrics

_timings: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("timings", default=None)


@contextlib.contextmanager
def timed(part: Literal["model", "store"], what: str) -> Iterator[None]:
    """Add the block's duration to ``part`` of the current request (no-op outside a request), and
    observe it in the Prometheus histogram of that part: embedding time by model, store time by operation.

    Works from worker threads too: ``run_in_threadpool`` copies the context, and the dict is shared.
    """
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        bucket = _timings.get()
        if bucket is not None:
            bucket[part] = bucket.get(part, 0.0) + elapsed
        metrics = get_metrics()
        histogram = metrics.embedding if part == "model" else metrics.store
        histogram.labels(what).observe(elapsed)


class ServerTimingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bucket: dict[str, float] = {}
        token = _timings.set(bucket)
        t0 = time.perf_counter()

        async def timing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                bucket["total"] = time.perf_counter() - t0
                value = ", ".join(f"{k};dur={v * 1000:.2f}" for k, v in bucket.items())
                message["headers"] = [*message.get("headers", []), (b"server-timing", value.encode())]
            await send(message)

        try:
            await self.app(scope, receive, timing_send)
        finally:
            _timings.reset(token)


class ContentLengthLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = dict(scope.get("headers") or []).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                body = json.dumps({"detail": f"request body is over the limit of {self.max_body_bytes} bytes"})
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 413, "headers": headers})
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)
