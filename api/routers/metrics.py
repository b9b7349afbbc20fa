"""``/metrics``: Prometheus text format (metric names in ``niteru.metrics`` and the README).

Open like the probes: scrapers rarely carry keys, and the numbers say nothing about the products.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.concurrency import run_in_threadpool

from api.errors import ALWAYS
from niteru.gate import serving_figures
from niteru.metrics import get_metrics, read_queue_length
from niteru.settings import Settings

router = APIRouter(tags=["operations"], responses=ALWAYS)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    # Read at scrape time, off the event loop, with a short timeout: a down broker is NaN, not a failed scrape.
    length = await run_in_threadpool(
        read_queue_length, settings.celery_broker_url, settings.celery_queue, settings.metrics_broker_timeout
    )
    metrics = get_metrics()
    metrics.queue_length.labels(settings.celery_queue).set(length)
    # The gate's report of the last rebuild, read at scrape time: the rebuild may run in another process.
    figures = await run_in_threadpool(serving_figures, settings)
    metrics.relevance.clear()  # a category gone from the sample must not keep its old figure
    for category, measures in figures.items():
        for name, value in measures.items():
            metrics.relevance.labels(name, category).set(value)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
