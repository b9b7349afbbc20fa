"""Request and response bodies of the API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from niteru.products import NonBlank, Product, ProductFields
from niteru.store import Hit

# Qdrant compares range filters as float64: versions stay below 2**53 to compare exactly.
MAX_VERSION = 2**53 - 1


class ProductPut(ProductFields):
    """``PUT /v1/products/{id}``: the fields and at most one image source.

    Without an image source an existing product keeps its stored image (a text or price update); a new
    product needs one (or an upload to ``PUT /v1/products/{id}/image``).
    """

    image_url: HttpUrl | None = Field(None, description="http(s) URL the service fetches (timeout, size cap).")
    image_path: str | None = Field(None, description="Path relative to the configured catalog folder.")
    image_version: int | None = Field(
        None, ge=0, le=MAX_VERSION, description="The shop's version of this image (default: the time received)."
    )

    @model_validator(mode="after")
    def _one_image_source(self) -> ProductPut:
        if self.image_url is not None and self.image_path is not None:
            raise ValueError("give image_url or image_path, not both")
        return self


class ImageUploadFields(ProductFields):
    """The optional ``product`` form field of ``PUT /v1/products/{id}/image``."""

    image_version: int | None = Field(None, ge=0, le=MAX_VERSION)


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    product_id: str
    shop_id: str
    title: str
    description: str
    category: str
    subcategory: str
    price: float | None
    image: str
    image_version: int
    image_model_version: str
    text_model_version: str
    updated_at: datetime

    @classmethod
    def of(cls, product: Product) -> ProductOut:
        return cls.model_validate(product.model_dump())


class PutResult(ProductOut):
    status: Literal["created", "updated", "unchanged"]


class Match(BaseModel):
    """A product in a result list, with its score (cosine for one vector, fused RRF score otherwise)."""

    product_id: str
    score: float
    shop_id: str
    title: str
    category: str
    subcategory: str
    price: float | None
    image: str

    @classmethod
    def of(cls, hit: Hit) -> Match:
        p = hit.product
        return cls(
            product_id=p.product_id,
            score=hit.score,
            shop_id=p.shop_id,
            title=p.title,
            category=p.category,
            subcategory=p.subcategory,
            price=p.price,
            image=p.image,
        )


class SimilarOut(BaseModel):
    product_id: str
    mode: str
    weights: dict[str, float] = Field(description="Weight of each vector in this query (0: not asked).")
    items: list[Match]


class TextSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: NonBlank = Field(max_length=20_000)
    k: int = Field(10, ge=1)
    category: str | None = None


class SearchOut(BaseModel):
    items: list[Match]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
    store: dict[str, str | int | None] = Field(default_factory=dict)
