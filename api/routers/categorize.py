"""``/v1/categorize``: the likeliest coarse categories of a text, a photo, both, or a stored product."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from api.deps import services_of
from api.errors import ERRORS
from api.images import read_upload
from api.schemas import CategorizeOut, CategoryEstimate
from api.security import require_read

router = APIRouter(prefix="/v1/categorize", tags=["categorize"], dependencies=[Depends(require_read)])


@router.post("", response_model=CategorizeOut, responses=ERRORS)
async def categorize(
    request: Request,
    text: Annotated[str | None, Form(max_length=20_000, description="Title and description.")] = None,
    file: Annotated[UploadFile | None, File(description="A photo of the product.")] = None,
    product_id: Annotated[str | None, Form(description="A stored product: its stored vectors.")] = None,
) -> CategorizeOut:
    """Multipart form: any of ``text``, ``file`` and ``product_id``. Given together, the upload and the
    text replace the stored product's vectors of the same kind."""
    services = services_of(request)
    image = await read_upload(file, services.settings) if file is not None else None
    text = text if text is None or text.strip() else None
    estimates, used = await run_in_threadpool(services.categorize, text, image, product_id)
    model = services.need_category()
    return CategorizeOut(
        categories=[CategoryEstimate(category=c, probability=p) for c, p in estimates],
        used=used,
        model_version=model.version,
    )
