"""What a product write is given, checked: the product id and fields, and where the image bytes come from.

The image bytes are resolved here and nowhere else: an http(s) URL through ``niteru.fetch`` (public hosts
only, timeouts, the size cap), a path inside the configured catalog folder, or bytes the caller already
read (an upload, ingest's read of its own catalog file).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from niteru import fetch
from niteru.products import Product, ProductFields, is_valid_product_id
from niteru.refusals import Refusal, from_fields
from niteru.settings import Settings


@dataclass(frozen=True)
class ImageSource:
    """A product's image: ``ref`` is what the product stores as its ``image``."""

    ref: str
    kind: Literal["url", "path", "bytes"]
    data: bytes | None = None

    @classmethod
    def url(cls, url: str) -> ImageSource:
        return cls(url, "url")

    @classmethod
    def path(cls, relative: str) -> ImageSource:
        return cls(relative, "path")

    @classmethod
    def given(cls, data: bytes, ref: str | None = None) -> ImageSource:
        """Bytes the caller read; without a ``ref`` (an upload) only their digest is kept."""
        return cls(ref if ref is not None else f"upload:{hashlib.sha256(data).hexdigest()}", "bytes", data)

    @classmethod
    def of_ref(cls, image: str) -> ImageSource:
        """The tasks' ``image`` argument: a URL when it has a scheme (only http(s) are fetched), else a path."""
        return cls.url(image) if "://" in image else cls.path(image)


def resolve_image(source: ImageSource, settings: Settings) -> bytes:
    """The image's bytes; a ``Refusal`` when they cannot be read (transient when a retry may help)."""
    if source.data is not None:
        return source.data
    if source.kind == "url":
        return fetch.fetch_url(source.ref, settings)
    return fetch.read_image_path(source.ref, settings)


@dataclass
class ProductWrite:
    """One product to store.

    ``fields`` None: keep the stored product's fields (an image-only write of a known product).
    ``image`` None: keep the stored image and its vector (a text or price update of a known product).
    ``image_version`` None: the time received, so a later write wins.
    """

    product_id: str
    fields: ProductFields | Mapping[str, Any] | None = None
    image: ImageSource | None = None
    image_version: int | None = None


def check_product_id(product_id: str) -> None:
    if not is_valid_product_id(product_id):
        raise Refusal(
            "invalid_product_id",
            f"product id {product_id!r} is empty, has control characters or whitespace at either end",
        )


def check_fields(product_id: str, fields: ProductFields | Mapping[str, Any]) -> ProductFields:
    """The shop's fields, validated; a ``Refusal`` names the first bad one (``empty_title``...)."""
    check_product_id(product_id)
    if isinstance(fields, ProductFields):
        return fields
    try:
        return ProductFields.model_validate(fields)
    except ValidationError as exc:
        raise from_fields(exc, product_id) from None


def fields_of(product: Product) -> ProductFields:
    """A stored product's fields as the shop gave them: an estimated category is estimated again."""
    fields = ProductFields.taken_from(product)
    return fields.model_copy(update={"category": ""}) if product.category_estimated else fields
