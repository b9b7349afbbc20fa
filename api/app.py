"""The FastAPI application, built by ``create_app(settings)``; nothing is loaded at import.

The lifespan loads the two models and opens the store once per process. A part that cannot load does
not stop the process: ``/healthz`` still answers, ``/readyz`` says what is missing, and only the endpoints
that need the missing part answer 503. The embedded store allows one process, so run one worker.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from api.errors import CatchAllMiddleware, install_error_handlers
from api.middleware import ContentLengthLimitMiddleware, ServerTimingMiddleware
from api.observe import MetricsMiddleware, RequestIdMiddleware
from api.routers import categorize, health, metrics, products, search, tasks, web
from api.security import KeyBeforeBodyMiddleware, warn_if_open
from api.services import Models, Services
from api.task_gateway import TaskGateway
from embedding.image.preprocess import limit_concurrent_decodes
from jobs.context import JobContext
from niteru import __version__
from niteru.embedders import Embedders
from niteru.refusals import Refusal
from niteru.settings import Settings, get_settings
from niteru.store import ProductStore, StoreError, open_store

if TYPE_CHECKING:
    from embedding.image import MobileNetEmbedder
    from embedding.text import TextEmbedder

log = logging.getLogger(__name__)

# Room for the multipart framing and form fields around an upload at the size limit.
MULTIPART_SLACK = 64 * 1024


def load_services(settings: Settings, embedders: Embedders | None = None) -> Services:
    """Load the models (unless given, already loaded) and open the store; record what failed and why."""
    services = Services(settings)
    image: MobileNetEmbedder | None = None
    text: TextEmbedder | None = None
    if embedders is not None:
        image, text = embedders.image, embedders.text
    else:
        from embedding.image import MobileNetEmbedder
        from embedding.image.weights import WeightsMissingError
        from embedding.text import TextEmbedder, TextError
        from niteru.model_config import image_config, text_config

        try:
            image = MobileNetEmbedder(image_config(settings)).load()
        except WeightsMissingError as exc:
            services.problems["image"] = str(exc)
        try:
            text = TextEmbedder(text_config(settings)).load()
        except TextError as exc:
            services.problems["text"] = str(exc)
    from embedding.category import CategoryModelMissingError
    from niteru.categorize import load_current

    category = None
    try:
        category = load_current(settings)
    except CategoryModelMissingError as exc:
        services.problems["category"] = str(exc)
    services.models = Models(image, text, category)
    try:
        store = open_store(settings)
    except StoreError as exc:
        services.problems["store"] = str(exc)
        return services
    services.store = store
    _live_text_model(services, store)
    try:
        if services.image is not None and services.text is not None:
            store.ensure_collection(services.embedders().dims)
        else:
            store.count()  # without both models, an existing collection still serves reads
    except StoreError as exc:
        # A server may come back later (calls answer 503 meanwhile); an embedded store with no
        # collection or the wrong sizes will not.
        services.problems["store"] = str(exc)
        if settings.qdrant_url is None:
            store.close()
            services.store = None
    if services.store is not None and "store" not in services.problems:
        from niteru.model_sync import ModelSync
        from niteru.route_table import load_route_table

        live = services.store.current_version()
        services.sync = ModelSync(settings, live)
        services.models = replace(services.models, routing=load_route_table(settings, live))
    for part, problem in services.problems.items():
        log.warning("%s unavailable: %s", part, problem)
    return services


def _live_text_model(services: Services, store: ProductStore) -> None:
    """Load the live collection's text model when ``CURRENT`` names another (see ``niteru.model_sync``)."""
    from niteru.model_sync import live_text_model

    if services.text is None:
        return
    from niteru.joint import load_joint

    try:
        text = live_text_model(services.settings, store, services.text)
    except (StoreError, Refusal) as exc:
        services.models = replace(services.models, text=None)
        services.problems["text"] = str(exc)
        return
    services.models = replace(services.models, text=text, joint=load_joint(services.settings, text.version))


async def _follow_rebuilds(services: Services) -> None:
    """Reads keep up with a rebuild made by another process (or the inline executor) within
    ``models_refresh_seconds``; writes check on their own before writing."""
    period = services.settings.models_refresh_seconds
    if services.sync is None or period <= 0:
        return
    while True:
        await anyio.sleep(period)
        try:
            await anyio.to_thread.run_sync(services.refresh_models)
        except (StoreError, Refusal) as exc:
            log.warning("could not check the live collection: %s", exc)


def _job_context(services: Services) -> Callable[[], JobContext] | None:
    """What the inline executor's tasks run against: this process's models and store, brought up to the
    live collection before each task. None when a part is missing (``/v1/tasks`` then answers 503)."""
    if services.store is None or services.image is None or services.text is None:
        return None

    def context() -> JobContext:
        services.refresh_models(force=True)
        category = services.problems.get("category", "not trained")
        return JobContext(services.settings, services.embedders(), services.need_store(), services.category, category)

    return context


def create_app(settings: Settings | None = None, *, embedders: Embedders | None = None) -> FastAPI:
    """The app; ``embedders`` lets a caller share already loaded models (tests, benchmarks)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await anyio.to_thread.run_sync(load_services, settings, embedders)
        app.state.services = services
        services.tasks = TaskGateway(settings, _job_context(services), services.problems).start()
        try:
            async with anyio.create_task_group() as background:
                background.start_soon(_follow_rebuilds, services)
                yield
                background.cancel_scope.cancel()
        finally:
            services.tasks.stop()
            if services.store is not None:
                await anyio.to_thread.run_sync(services.store.close)

    max_body = settings.api_max_upload_bytes + MULTIPART_SLACK
    app = FastAPI(
        title="niteru",
        summary="Similar products across shops, by image and by text.",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.settings = settings
    limit_concurrent_decodes(settings.image_max_concurrent_decodes)
    warn_if_open(settings)
    # Added innermost first: the request id wraps everything (a 413 or a CORS refusal carries it too).
    app.add_middleware(ServerTimingMiddleware)
    app.add_middleware(ContentLengthLimitMiddleware, max_body_bytes=max_body)
    routers = (health.router, products.router, search.router, categorize.router, tasks.router)
    app.add_middleware(KeyBeforeBodyMiddleware, routers=routers)  # a 401 before any body is read
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Content-Type", "Authorization", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Server-Timing"],
        )
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(CatchAllMiddleware)  # inside the request id: a 500 carries it
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=web.WEB_DIR), name="static")
    app.include_router(web.router)
    app.include_router(metrics.router)
    for router in routers:
        # The cap is on the routes rather than the app: FastAPI's app-level cap sits outside our middleware
        # and answers a declared oversize body in plain text; per route it stops a chunked body as JSON.
        app.include_router(router, max_body_size=max_body)
    return app
