"""``/v1/search``: products that look like a photo (multipart upload), or that match a free text."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from api.deps import services_of
from api.errors import ERRORS
from api.images import read_upload
from api.schemas import DIVERSITY, Match, SearchOut, TextSearchIn
from api.security import require_read

router = APIRouter(prefix="/v1/search", tags=["search"], dependencies=[Depends(require_read)])


@router.post("/image", response_model=SearchOut, responses=ERRORS)
async def search_image(
    request: Request,
    file: Annotated[UploadFile, File(description="A photo of the product sought.")],
    k: Annotated[int, Query(ge=1)] = 10,
    category: Annotated[str | None, Query()] = None,
    diversity: Annotated[float, Query(ge=0, le=1, allow_inf_nan=False, description=DIVERSITY)] = 0.0,
) -> SearchOut:
    services = services_of(request)
    data = await read_upload(file, services.settings)
    hits = await run_in_threadpool(services.search_image, data, k, category, diversity)
    return SearchOut(items=[Match.of(h) for h in hits])


@router.post("/text", response_model=SearchOut, responses=ERRORS)
async def search_text(body: TextSearchIn, request: Request) -> SearchOut:
    services = services_of(request)
    hits = await run_in_threadpool(services.search_text, body.text, body.k, body.category, body.diversity)
    return SearchOut(items=[Match.of(h) for h in hits])
