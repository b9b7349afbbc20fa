"""``/healthz`` (the process answers) and ``/readyz`` (models loaded, store reachable)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import services_of
from api.errors import ALWAYS
from api.schemas import Health, Ready
from niteru.store import StoreError

log = logging.getLogger(__name__)
UNAVAILABLE = "unavailable (the reason is in the server log)"
router = APIRouter(tags=["health"], responses=ALWAYS)


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
async def readyz(request: Request) -> JSONResponse:
    services = services_of(request)
    # Why a part is missing is in the log (it may name a server URL or a process's command line).
    checks = {name: "ok" if getattr(services, name) is not None else UNAVAILABLE for name in ("image", "text", "store")}
    info: dict[str, str | int | None] = {}
    if services.store is not None:
        try:
            info = await run_in_threadpool(services.store.info)
        except StoreError as exc:
            log.warning("store unavailable: %s", exc)
            checks["store"] = UNAVAILABLE
    ready = all(v == "ok" for v in checks.values())
    body = Ready(status="ready" if ready else "unavailable", checks=checks, store=info)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
