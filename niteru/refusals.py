"""One refusal type for everything the service declines to do with a product or an image.

A ``Refusal`` names a stable ``reason`` code (ingest error files, task failure records and API details
all carry it), a message for people, whether trying again later may work (``transient``: an image host
timed out, the store is down) and the HTTP status the API answers with. The API renders it as
``{"detail": "refused (reason): message"}``; a task retries a transient one and records a permanent one.

``embedding`` may not import the service, so its own ``ImageError``/``TextError`` are converted here, at
the boundary, by ``from_embedding``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

    from embedding.image.errors import ImageError
    from embedding.text.errors import TextError

# Statuses other than 422, by reason: what the API answered before there was one refusal type.
STATUS = {
    "not_an_image": 415,
    "too_large": 413,
    "stale": 409,
    "unknown_product": 404,
    "store_unavailable": 503,
    "model_unavailable": 503,
}


# Not an "...Error": refusing a product is an answer of the service, not a fault in it.
class Refusal(Exception):  # noqa: N818
    """Why a product, an image or a call was refused; ``product_id`` is set for an item of a batch."""

    def __init__(
        self, reason: str, message: str, *, transient: bool = False, status: int | None = None, product_id: str = ""
    ) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.transient = transient
        self.status = status if status is not None else STATUS.get(reason, 422)
        self.product_id = product_id

    @property
    def detail(self) -> str:
        """The API's ``detail``: the reason code first, so clients can match it."""
        return f"refused ({self.reason}): {self.message}"

    def of(self, product_id: str) -> Refusal:
        """The same refusal, naming the product it is about."""
        return Refusal(self.reason, self.message, transient=self.transient, status=self.status, product_id=product_id)

    def as_result(self) -> dict[str, Any]:
        """A failed item in a task's result."""
        return {"product_id": self.product_id, "status": "failed", "reason": self.reason, "message": self.message}


def from_embedding(exc: ImageError | TextError, product_id: str = "") -> Refusal:
    """The one conversion of the model packages' typed errors (same reason codes, same messages)."""
    return Refusal(exc.reason, exc.message, product_id=product_id)


def field_reason(error: Mapping[str, Any]) -> str:
    """The reason code of one pydantic error entry: ``empty_title``, ``invalid_price``... (the API's
    request validation and the core's refusals name a bad field alike)."""
    names = [str(part) for part in error.get("loc", ()) if isinstance(part, str) and part != "body"]
    name = names[-1] if names else "fields"
    kind = "empty" if "empty" in str(error.get("msg", "")) or error.get("type") == "string_too_short" else "invalid"
    return f"{kind}_{name}"


def from_fields(exc: ValidationError, product_id: str = "") -> Refusal:
    """A product's fields that do not validate: ``empty_title``, ``invalid_price``... (the first error)."""
    first = exc.errors(include_url=False)[0]
    name = str(first["loc"][0]) if first["loc"] else "fields"
    return Refusal(field_reason(first), f"{name}: {first['msg']}", product_id=product_id)


def no_words(product_id: str = "") -> Refusal:
    """A text without a single word the text model knows: its vector would be nobody's neighbour."""
    message = "title and description hold no word the text model knows"
    return Refusal("text_has_no_words", message, product_id=product_id)


def store_unavailable(exc: Exception) -> Refusal:
    return Refusal("store_unavailable", f"store unavailable: {exc}", transient=True)
