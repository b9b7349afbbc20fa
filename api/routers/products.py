"""``/v1/products``: put (JSON with an image URL or catalog path, or a multipart upload), get, delete,
and the similar products of a stored product."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import services_of
from api.errors import ERRORS, ApiError
from api.images import read_upload, stored_image
from api.schemas import (
    DIVERSITY,
    ImageUploadFields,
    ProductList,
    ProductOut,
    ProductPut,
    PutResult,
    SimilarOut,
)
from api.security import require_read, require_write
from niteru.fusion import Fusion
from niteru.products import PRODUCT_ID_PATTERN, ProductFields
from niteru.routing import Mode
from niteru.similar import SimilarOptions
from niteru.store import SearchFilter
from niteru.write_inputs import ImageSource

router = APIRouter(prefix="/v1/products", tags=["products"], dependencies=[Depends(require_read)])
WRITE = [Depends(require_write)]

ProductId = Annotated[str, Path(pattern=PRODUCT_ID_PATTERN, description="The shop's product id.")]
__all__ = ["ERRORS", "router"]


def _put_status(result: PutResult, response: Response) -> PutResult:
    response.status_code = 201 if result.status == "created" else 200
    return result


@router.put("/{product_id}", response_model=PutResult, responses=ERRORS, dependencies=WRITE)
async def put_product(product_id: ProductId, body: ProductPut, request: Request, response: Response) -> PutResult:
    """Create or replace a product. The image comes from ``image_url`` or ``image_path``; without either
    an existing product keeps its stored image (a text or price update)."""
    services = services_of(request)
    fields = ProductFields.taken_from(body)

    image: ImageSource | None = None
    if body.image_url is not None:
        image = ImageSource.url(str(body.image_url))
    elif body.image_path is not None:
        image = ImageSource.path(body.image_path)

    def work() -> PutResult:
        product, status = services.put_product(product_id, fields, image, body.image_version)
        return PutResult(**ProductOut.of(product).model_dump(), status=status)

    return _put_status(await run_in_threadpool(work), response)


@router.put("/{product_id}/image", response_model=PutResult, responses=ERRORS, dependencies=WRITE)
async def put_product_image(
    product_id: ProductId,
    request: Request,
    response: Response,
    file: Annotated[UploadFile, File(description="The product photo (JPEG, PNG, WebP...).")],
    product: Annotated[
        str | None, Form(description="JSON of the product fields; optional when the product is stored.")
    ] = None,
) -> PutResult:
    """Upload a product's image (multipart). A new product also needs the ``product`` field."""
    services = services_of(request)
    data = await read_upload(file, services.settings)
    version: int | None = None
    fields: ProductFields | None = None
    if product is not None:
        try:
            given = ImageUploadFields.model_validate_json(product)
        except ValidationError as exc:  # the same 422 as a JSON body's, located in the form field
            errors = exc.errors(include_url=False)
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None
        version = given.image_version
        fields = ProductFields.taken_from(given)

    def work() -> PutResult:
        # Without the product field a stored product keeps its fields; an unknown one is a 404.
        stored, status = services.put_product(product_id, fields, ImageSource.given(data), version)
        return PutResult(**ProductOut.of(stored).model_dump(), status=status)

    return _put_status(await run_in_threadpool(work), response)


@router.get("", response_model=ProductList, responses=ERRORS)
async def list_products(
    request: Request,
    category: Annotated[str | None, Query(max_length=100, description="Only products of this category.")] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, description="How many products (at most api_max_k).")] = 48,
) -> ProductList:
    """Stored products in a stable order, with every category's count (the web page's grid)."""
    listing = await run_in_threadpool(services_of(request).list_products, category, offset, limit)
    return ProductList(total=listing.total, offset=offset, categories=listing.categories, items=listing.items)


@router.get("/{product_id}/image", response_class=Response, responses=ERRORS)
async def get_product_image(product_id: ProductId, request: Request) -> Response:
    """The stored product's image: the catalog file, or a redirect to its URL (404 for an uploaded one)."""
    services = services_of(request)
    product = await run_in_threadpool(services.get_product, product_id)
    return stored_image(product, services.settings)


@router.get("/{product_id}", response_model=ProductOut, responses=ERRORS)
async def get_product(product_id: ProductId, request: Request) -> ProductOut:
    product = await run_in_threadpool(services_of(request).get_product, product_id)
    return ProductOut.of(product)


@router.delete("/{product_id}", status_code=204, responses=ERRORS, dependencies=WRITE)
async def delete_product(product_id: ProductId, request: Request) -> Response:
    await run_in_threadpool(services_of(request).delete_product, product_id)
    return Response(status_code=204)


@router.get("/{product_id}/similar", response_model=SimilarOut, responses=ERRORS)
async def similar(
    product_id: ProductId,
    request: Request,
    k: Annotated[int, Query(ge=1, description="How many products (at most api_max_k).")] = 10,
    mode: Annotated[
        Mode,
        Query(
            description="auto routes by the product's category; image, text, hybrid (50/50) and joint (the "
            "learned vector; 409 before a rebuild trained it) do not."
        ),
    ] = Mode.auto,
    fusion: Annotated[
        Fusion | None, Query(description="Fusion of the image and text lists (default: the fusion setting).")
    ] = None,
    category: Annotated[str | None, Query(description="Only products of this category.")] = None,
    subcategory: Annotated[str | None, Query(description="Only products of this subcategory.")] = None,
    shop_id: Annotated[str | None, Query(description="Only products of this shop.")] = None,
    price_min: Annotated[
        float | None, Query(ge=0, allow_inf_nan=False, description="Lowest price (products without one drop out).")
    ] = None,
    price_max: Annotated[float | None, Query(ge=0, allow_inf_nan=False, description="Highest price.")] = None,
    exclude_same_shop: Annotated[bool, Query(description="Leave out the product's own shop.")] = False,
    max_per_shop: Annotated[int | None, Query(ge=1, description="At most this many products per shop.")] = None,
    exclude: Annotated[list[str] | None, Query(max_length=200, description="Product ids to leave out.")] = None,
    diversity: Annotated[float, Query(ge=0, le=1, allow_inf_nan=False, description=DIVERSITY)] = 0.0,
    explain: Annotated[bool, Query(description="Per result: image, text and fused scores, and the ranks.")] = False,
    estimate_category: Annotated[
        bool, Query(description="mode=auto: route by the classifier's estimate even when the shop gave a category.")
    ] = False,
) -> SimilarOut:
    """Products like this one, best first, never the product itself."""
    if price_min is not None and price_max is not None and price_min > price_max:
        raise ApiError(422, f"price_min ({price_min}) is above price_max ({price_max})")
    options = SimilarOptions(
        k=k,
        mode=mode,
        fusion=fusion,
        filter=SearchFilter(
            category=category,
            subcategory=subcategory,
            shop_id=shop_id,
            price_min=price_min,
            price_max=price_max,
            exclude_product_ids=tuple(exclude or ()),
        ),
        exclude_same_shop=exclude_same_shop,
        max_per_shop=max_per_shop,
        diversity=diversity,
        explain=explain,
        estimate_category=estimate_category,
    )
    services = services_of(request)
    if services.store is not None and services.store.holds_gil and _cheap(options):
        # On a worker thread nothing would run beside it, and under concurrent clients the hand-offs cost
        # CPU and the store time grew with the clients (bench/results/api_latency-threads.md).
        result = services.similar(product_id, options)
    else:
        result = await run_in_threadpool(services.similar, product_id, options)
    return SimilarOut.of(result)


# The most results a similar request may ask for and still run on the event loop (a few milliseconds;
# the default page is 10, NITERU_API_MAX_K 100).
EVENT_LOOP_MAX_K = 50


def _cheap(options: SimilarOptions) -> bool:
    """Whether a similar request costs a few milliseconds. A long one (a large page, diversity, a shop cap
    that fetches more, explain's second search) goes to a worker thread even on Edge: there the interpreter
    switches threads every few milliseconds, so other requests (health checks, uploads) are not held up
    for its whole run, as on the event loop they would be."""
    return (
        options.k <= EVENT_LOOP_MAX_K and not options.diversity and options.max_per_shop is None and not options.explain
    )
