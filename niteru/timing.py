"""How long the model and the store took, per request and in the Prometheus histograms.

The write and read use cases wrap their model and store calls in ``timed(...)`` blocks. The API's
``Server-Timing`` middleware opens a bucket per request (``request_timings``) and writes the sums into
the header; outside a request (a worker, ingest) only the histograms are fed.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from typing import Literal

from niteru.metrics import get_metrics

_timings: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("timings", default=None)


@contextlib.contextmanager
def timed(part: Literal["model", "store"], what: str) -> Iterator[None]:
    """Add the block's duration to ``part`` of the current request (if any), and observe it in the
    histogram of that part: embedding time by model, store time by operation.

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


@contextlib.contextmanager
def request_timings() -> Iterator[dict[str, float]]:
    """A fresh bucket that ``timed`` blocks of this context (and its copies) add to."""
    bucket: dict[str, float] = {}
    token = _timings.set(bucket)
    try:
        yield bucket
    finally:
        _timings.reset(token)
