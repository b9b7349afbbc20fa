"""Many images in one task: download in parallel, embed as one batch, one upsert.

MobileNet on 2 cores runs about 12 images/s one at a time and about 30 images/s in batches of 32
(``bench/results/image_throughput.md``), so a shop registering a catalog should send
``niteru.images.registered_many`` rather than hundreds of single tasks. One bad item never sinks the
batch: an invalid or permanently failing item ends ``failed`` (and is recorded by the caller), an item
whose download failed transiently ends ``retry`` and the caller re-sends it as a single
``niteru.images.registered`` task, which retries with backoff on its own.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jobs.work import (
    JobContext,
    PermanentJobError,
    TransientJobError,
    embed_and_store,
    failed,
    prepare_image,
)
from niteru.embedders import ProductInput
from niteru.store import StoreUnavailableError

log = logging.getLogger(__name__)
ITEM_KEYS = {"product_id", "image", "image_version", "fields"}


def _check_item(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("product_id"), str) or not isinstance(raw.get("image"), str):
        raise PermanentJobError("invalid_item", "each item needs a string product_id and image")
    unknown = set(raw) - ITEM_KEYS
    if unknown:
        raise PermanentJobError("invalid_item", f"unknown keys {sorted(unknown)}; allowed: {sorted(ITEM_KEYS)}")
    version = raw.get("image_version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise PermanentJobError("invalid_item", "image_version must be an integer")
    return raw


def _latest_per_product(items: list[dict[str, Any]]) -> tuple[dict[str, int], set[int]]:
    """Index of the item that wins for each product id (the highest image_version, the last on ties; no
    version means "now", as in a single task); the others are superseded, as running them in order would
    leave them."""

    def version(item: dict[str, Any]) -> float:
        given = item.get("image_version")
        return float("inf") if given is None else float(given)

    winner: dict[str, int] = {}
    for i, item in enumerate(items):
        best = winner.get(item["product_id"])
        if best is None or version(item) >= version(items[best]):
            winner[item["product_id"]] = i
    return winner, set(range(len(items))) - set(winner.values())


def register_images(ctx: JobContext, raw_items: list[object]) -> list[dict[str, Any]]:
    """A result per item, in order. Raises ``TransientJobError`` only when the store is down (the whole
    batch is then retried; items are idempotent)."""
    results: list[dict[str, Any] | None] = [None] * len(raw_items)
    items: dict[int, dict[str, Any]] = {}
    for i, raw in enumerate(raw_items):
        try:
            items[i] = _check_item(raw)
        except PermanentJobError as exc:
            pid = raw.get("product_id") if isinstance(raw, dict) else None
            results[i] = failed(str(pid or ""), exc.reason, exc.message)
    order = list(items)
    winner, superseded = _latest_per_product([items[i] for i in order])
    for j in superseded:
        results[order[j]] = {"product_id": items[order[j]]["product_id"], "status": "superseded"}
    todo = [order[j] for j in winner.values()]
    try:
        existing = {i: ctx.store.get(items[i]["product_id"]) for i in todo}
    except StoreUnavailableError as exc:
        raise TransientJobError(str(exc)) from exc

    def prepare(i: int) -> ProductInput | dict[str, Any]:
        it = items[i]
        try:
            return prepare_image(
                ctx, it["product_id"], it["image"], it.get("image_version"), it.get("fields"), existing[i]
            )
        except PermanentJobError as exc:
            return failed(it["product_id"], exc.reason, exc.message)
        except TransientJobError as exc:
            return {"product_id": it["product_id"], "status": "retry", "message": str(exc)}

    # Downloads wait on the network, not the CPU: threads overlap them.
    with ThreadPoolExecutor(min(ctx.settings.jobs_fetch_threads, max(1, len(todo)))) as pool:
        prepared = dict(zip(todo, pool.map(prepare, todo), strict=True))
    ready = {i: p for i, p in prepared.items() if isinstance(p, ProductInput)}
    for i, p in prepared.items():
        if not isinstance(p, ProductInput):
            results[i] = p
    existed = {items[i]["product_id"] for i in ready if existing[i] is not None}
    stored = embed_and_store(ctx, list(ready.values()), existed)
    for i, p in ready.items():
        results[i] = stored[p.product_id]
    log.info("image batch: %d items, %d embedded", len(raw_items), len(ready))
    done = [r for r in results if r is not None]
    assert len(done) == len(raw_items), "every item has a result"
    return done
