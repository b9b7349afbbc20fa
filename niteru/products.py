"""The product schema every part of the service agrees on (pydantic).

``ProductFields`` is what a shop says about a product; ``Product`` is what the store keeps: those fields
plus the image reference and the versions of what the vectors were computed from. The store, the ingest
and the API all speak these types, never a vector database's own.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# Shop product ids are free-form strings, taken exactly as given; we only refuse what cannot be a path
# segment or a log line, and whitespace at either end (``"abc "`` would otherwise read as ``"abc"``).
PRODUCT_ID_PATTERN = r"^[^\s\x00-\x1f\x7f/?#](?:[^\x00-\x1f\x7f/?#]{0,198}[^\s\x00-\x1f\x7f/?#])?$"
_PRODUCT_ID_RE = re.compile(PRODUCT_ID_PATTERN)

# The largest version (image_version, delete versions) anything accepts: Qdrant compares range filters as
# float64, exact only below 2**53. Every door (PUT, task arguments, ingest) checks against this one bound.
MAX_VERSION = 2**53 - 1

# Fixed namespace: the same product id maps to the same point id in every store and every rebuild.
POINT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://niteru.invalid/products")


def _not_blank(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty or only whitespace")
    return value


NonBlank = Annotated[str, AfterValidator(_not_blank)]


def is_valid_product_id(product_id: str) -> bool:
    return bool(_PRODUCT_ID_RE.match(product_id)) and product_id == product_id.strip()


def point_id(product_id: str) -> str:
    """Deterministic UUIDv5 point id of a shop's product id (the original stays in the payload)."""
    return str(uuid.uuid5(POINT_ID_NAMESPACE, product_id))


def product_text(title: str, description: str) -> str:
    """What the text model reads of a product: the title, then the description (training and serving alike)."""
    return f"{title}\n{description}".strip()


def utc_now() -> datetime:
    return datetime.now(UTC)


def now_version() -> int:
    """An image version from the clock, in microseconds: a later upload gets a larger number.

    Microseconds, not nanoseconds: Qdrant compares range filters as float64, exact only below 2**53.
    """
    return int(utc_now().timestamp() * 1_000_000)


class ProductFields(BaseModel):
    """What a shop tells us about a product (the body of ``PUT /v1/products/{id}``, minus the image)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    shop_id: NonBlank = Field(max_length=200, description="The shop (or brand) selling the product.")
    title: NonBlank = Field(max_length=1000)
    description: str = Field("", max_length=50_000)
    category: str = Field(
        "",
        max_length=100,
        description="Coarse routing label, e.g. fashion, food. Empty: the service estimates it from the vectors.",
    )
    subcategory: str = Field("", max_length=200)
    price: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Price in the shop's currency; null when unknown."
    )

    @property
    def text(self) -> str:
        return product_text(self.title, self.description)

    @classmethod
    def taken_from(cls, model: BaseModel) -> ProductFields:
        """The shop's fields of a stored product, or of a request body that extends them."""
        return cls.model_validate(model.model_dump(include=set(cls.model_fields)))


class Product(ProductFields):
    """A stored product: the shop's fields, its image reference and the provenance of its vectors."""

    product_id: str
    image: str = Field(description="Where the image came from: a catalog path, a URL or upload:<sha256>.")
    image_sha256: str
    image_version: int = Field(description="Grows with every new image; an older image never overwrites a newer.")
    category_estimated: bool = Field(False, description="The category is the classifier's estimate, not the shop's.")
    image_model_version: str
    text_model_version: str
    joint_model_version: str | None = Field(None, description="The joint vector's model; None: no joint vector.")
    content_hash: str = Field(description="Hash of fields + image bytes + model versions; unchanged means skip.")
    updated_at: datetime


def content_hash(
    fields: ProductFields, image_sha256: str, image_model: str, text_model: str, joint_model: str | None = None
) -> str:
    """What decides whether a product must be embedded again: its fields, its image and the models. Without
    a joint model the hash is what it was before the joint vector existed (stored hashes stay valid)."""
    h = hashlib.sha256()
    h.update(fields.model_dump_json().encode())
    parts = (image_sha256, image_model, text_model) + (() if joint_model is None else (joint_model,))
    for part in parts:
        h.update(b"\0" + part.encode())
    return h.hexdigest()
