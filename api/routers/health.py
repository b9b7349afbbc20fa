"""``/healthz`` (the process answers) and ``/readyz`` (models loaded, store reachable)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import services_of
from api.schemas import Health, Ready
from niteru.store import StoreError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
async def readyz(request: Request) -> JSONResponse:
    services = services_of(request)
    checks = {
        name: "ok" if getattr(services, name) is not None else services.problems.get(name, "not loaded")
        for name in ("image", "text", "store")
    }
    info: dict[str, str | int | None] = {}
    if services.store is not None:
        try:
            info = await run_in_threadpool(services.store.info)
        except StoreError as exc:
            checks["store"] = str(exc)
    ready = all(v == "ok" for v in checks.values())
    body = Ready(status="ready" if ready else "unavailable", checks=checks, store=info)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
