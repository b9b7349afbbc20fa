"""What the tasks do, as plain functions over a ``JobContext`` (models and store loaded once per process).

The Celery tasks in ``jobs/tasks.py`` are thin wrappers; in the embedded deployment the API can call
these same functions in its own process. Errors are split in two: ``TransientJobError`` (the store is
down, an image host timed out: retry later) and ``PermanentJobError`` (a corrupt image, a 404, invalid
fields: retrying cannot help; the task records it and stops).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from niteru.embedders import (
    Embedders,
    ItemFailure,
    ProductInput,
    embed_products,
    input_hash,
    load_embedders,
    reembed_text,
)
from niteru.fetch import ImageSourceError, fetch_url, read_image_path
from niteru.model_sync import ModelSync
from niteru.products import ProductFields, is_valid_product_id, now_version
from niteru.settings import Settings
from niteru.store import ProductPoint, ProductStore, StoreUnavailableError, UpsertOutcome, open_store

log = logging.getLogger(__name__)


class PermanentJobError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class TransientJobError(Exception):
    """Worth retrying: the cause may be gone in a while."""


@dataclass
class JobContext:
    settings: Settings
    embedders: Embedders
    store: ProductStore
    sync: ModelSync | None = None

    @classmethod
    def load(cls, settings: Settings) -> JobContext:
        embedders = load_embedders(settings)
        store = open_store(settings)
        store.ensure_collection(embedders.dims)
        return cls(settings, embedders, store, ModelSync(settings, store.current_version()))

    def refresh(self) -> None:
        """Before a task: if a rebuild swapped the live collection, take its text model (every task writes,
        and a text vector from the old model in the new collection would be wrong until the next rebuild)."""
        if self.sync is None:
            return
        try:
            reloaded = self.sync.check(self.store, self.embedders.text.version, force=True)
        except StoreUnavailableError as exc:
            raise TransientJobError(str(exc)) from exc
        if reloaded is not None and reloaded.text is not None:
            self.embedders = Embedders(self.embedders.image, reloaded.text)

    def close(self) -> None:
        self.store.close()


def _fields(product_id: str, fields: dict[str, Any]) -> ProductFields:
    if not is_valid_product_id(product_id):
        raise PermanentJobError("invalid_product_id", f"{product_id!r} is not a valid product id")
    try:
        return ProductFields.model_validate(fields)
    except ValidationError as exc:
        raise PermanentJobError("invalid_fields", str(exc.errors(include_url=False))) from None


def read_image(image: str, settings: Settings) -> bytes:
    """An http(s) URL (public hosts only, timeouts, size cap) or a path inside the catalog folder."""
    try:
        if "://" in image:
            return fetch_url(image, settings)  # other schemes (file://, ftp://) are refused there
        return read_image_path(image, settings)
    except ImageSourceError as exc:
        if exc.transient:
            raise TransientJobError(exc.message) from exc
        raise PermanentJobError(exc.reason, exc.message) from None


def upsert_product(
    ctx: JobContext, product_id: str, fields: dict[str, Any], image: str | None, image_version: int | None
) -> dict[str, Any]:
    """A product's fields changed. A stored product whose image is unchanged gets its new text vector now;
    otherwise the answer asks for an image task (``needs_image``), which embeds the image and the text."""
    parsed = _fields(product_id, fields)
    try:
        existing = ctx.store.get(product_id, with_vectors=True)
        same_image = existing is not None and (
            image is None
            or (existing.product.image == image and (image_version or 0) <= existing.product.image_version)
        )
        if existing is None or not same_image:
            if image is None:
                raise PermanentJobError("no_image", f"product {product_id!r} is new and needs an image")
            return {"product_id": product_id, "status": "needs_image"}
        result = reembed_text(existing, parsed, ctx.embedders)
        if isinstance(result, ItemFailure):
            raise PermanentJobError(result.reason, result.message)
        if result is None:
            return {"product_id": product_id, "status": "unchanged"}
        outcome = ctx.store.upsert([result])
    except StoreUnavailableError as exc:
        raise TransientJobError(str(exc)) from exc
    return {"product_id": product_id, "status": "stale" if outcome.stale else "updated"}


def prepare_image(
    ctx: JobContext,
    product_id: str,
    image: str,
    image_version: int | None,
    fields: dict[str, Any] | None,
    existing: ProductPoint | None,
) -> ProductInput | dict[str, Any]:
    """Everything before the model: fields, the version check, the download. A result instead of an input
    when nothing is left to do (an older version than the stored one, or the same content)."""
    if fields is None:
        if existing is None:
            raise PermanentJobError("unknown_product", f"no product {product_id!r}: send its fields with the image")
        fields = ProductFields.taken_from(existing.product).model_dump()
    parsed = _fields(product_id, fields)
    version = image_version if image_version is not None else now_version()
    if existing is not None and existing.product.image_version > version:
        return {"product_id": product_id, "status": "stale", "stored_version": existing.product.image_version}
    item = ProductInput(product_id, parsed, read_image(image, ctx.settings), image, version)
    if existing is not None and existing.product.content_hash == input_hash(item, ctx.embedders):
        return {"product_id": product_id, "status": "unchanged"}
    return item


def embed_and_store(ctx: JobContext, items: list[ProductInput], existed: set[str]) -> dict[str, dict[str, Any]]:
    """Embed ``items`` as one batch and upsert what embedded, conditional on image_version in the store.
    Per product id: its result, or ``status: failed`` with the reason (the caller records it)."""
    results: dict[str, dict[str, Any]] = {}
    points = []
    for item, out in zip(items, embed_products(items, ctx.embedders), strict=True):
        if isinstance(out, ItemFailure):
            results[item.product_id] = failed(item.product_id, out.reason, out.message)
        else:
            points.append(out)
    try:
        outcome = ctx.store.upsert(points) if points else UpsertOutcome()
    except StoreUnavailableError as exc:
        raise TransientJobError(str(exc)) from exc
    stale = set(outcome.stale)
    for p in points:
        pid = p.product.product_id
        status = "stale" if pid in stale else ("updated" if pid in existed else "created")
        results[pid] = {"product_id": pid, "status": status, "image_version": p.product.image_version}
    return results


def failed(product_id: str, reason: str, message: str) -> dict[str, Any]:
    return {"product_id": product_id, "status": "failed", "reason": reason, "message": message}


def register_image(
    ctx: JobContext, product_id: str, image: str, image_version: int | None, fields: dict[str, Any] | None
) -> dict[str, Any]:
    """Fetch, embed and store a product's image (and its text); an older image never replaces a newer one."""
    try:
        existing = ctx.store.get(product_id)
    except StoreUnavailableError as exc:
        raise TransientJobError(str(exc)) from exc
    prepared = prepare_image(ctx, product_id, image, image_version, fields, existing)
    if isinstance(prepared, dict):
        return prepared
    result = embed_and_store(ctx, [prepared], {product_id} if existing is not None else set())[product_id]
    if result["status"] == "failed":
        raise PermanentJobError(result["reason"], result["message"])
    return result


def delete_product(ctx: JobContext, product_id: str) -> dict[str, Any]:
    try:
        found = ctx.store.delete(product_id)
    except StoreUnavailableError as exc:
        raise TransientJobError(str(exc)) from exc
    return {"product_id": product_id, "status": "deleted" if found else "absent"}
