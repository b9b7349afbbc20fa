"""The one product write: the API (PUT and the image upload), the tasks (single and batch, in Celery or
inline) and ingest all store products through ``ProductWriter``.

Per product, in order: the id and fields are checked; an image older than the stored one is refused as
``stale`` before any work; the image bytes are resolved (``niteru.write_inputs``); content stored
unchanged (same fields, image bytes and models) is skipped; images and texts are embedded as one batch;
a product sent without a category gets the classifier's estimate, marked ``category_estimated``; the
points are upserted conditional on ``image_version`` (a newer image stored meanwhile wins: ``stale``).
A product that cannot be written ends as a ``Refusal`` with its reason; in a batch one bad item never
sinks the others. The store, the embedders and the category estimator are given by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from niteru.categorize import Estimator
from niteru.embedders import Embedders, ProductInput, embed_products, input_hash, reembed_text
from niteru.photos import is_kept, keep_photo
from niteru.products import Product, ProductFields, now_version
from niteru.refusals import Refusal
from niteru.settings import Settings
from niteru.store import ProductPoint, ProductStore
from niteru.timing import timed
from niteru.write_inputs import ProductWrite, check_fields, check_product_id, fields_of, resolve_image

if TYPE_CHECKING:
    pass

WriteStatus = Literal["created", "updated", "unchanged", "stale", "superseded"]


@dataclass
class WriteResult:
    """What became of one product. ``product``: what is stored now (the refused write's product for a
    stale conditional write). ``stored_version``: set when a newer stored image refused the write before
    any work; ``image_version``: the version written (or tried)."""

    product_id: str
    status: WriteStatus
    product: Product | None = None
    image_version: int | None = None
    stored_version: int | None = None

    def stale_refusal(self) -> Refusal:
        """How a caller that must not swallow a stale write (the API: 409) says it."""
        newer = f"version {self.stored_version}" if self.stored_version is not None else "a newer version"
        given = f" > {self.image_version}" if self.image_version is not None else ""
        return Refusal(
            "stale",
            f"product {self.product_id!r} already has a newer image ({newer}{given}); nothing was written",
            product_id=self.product_id,
        )


WriteOutcome = WriteResult | Refusal


@dataclass
class _Item:
    """A product on its way through ``prepare``."""

    index: int
    write: ProductWrite
    fields: ProductFields
    existing: ProductPoint | None
    version: int = 0
    point: ProductPoint | None = None
    photo: bytes | None = None  # an upload's or a URL's bytes, kept as a small copy once stored (niteru.photos)


@dataclass
class Prepared:
    """Checked and embedded, not stored yet: ingest stores one batch while it embeds the next."""

    results: list[WriteOutcome | None]
    ready: list[_Item] = field(default_factory=list)


class ProductWriter:
    def __init__(
        self,
        settings: Settings,
        store: ProductStore,
        embedders: Embedders,
        estimator: Estimator | None = None,
        *,
        estimator_problem: str = "not trained",
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedders = embedders
        self.estimator = estimator
        self.estimator_problem = estimator_problem  # why there is no estimator, for the refusal's message

    def write(self, item: ProductWrite) -> WriteResult:
        """One product; a ``Refusal`` is raised."""
        (result,) = self.write_many([item])
        if isinstance(result, Refusal):
            raise result
        return result

    def delete(self, product_id: str, version: int | None = None) -> bool:
        """Delete a product as of ``version`` (None: now); see ``delete_product``."""
        return delete_product(self.store, product_id, version)

    def write_many(self, items: Sequence[ProductWrite]) -> list[WriteOutcome]:
        """A result or a refusal per item, in order; only a store that is down raises."""
        return self.commit(self.prepare(items))

    def prepare(self, items: Sequence[ProductWrite]) -> Prepared:
        """Everything but the store write: checks, stale and unchanged skips, embedding, categories."""
        results: list[WriteOutcome | None] = [None] * len(items)
        checked: dict[int, ProductFields | None] = {}
        for i, w in enumerate(items):
            try:
                check_product_id(w.product_id)
                checked[i] = None if w.fields is None else check_fields(w.product_id, w.fields)
            except Refusal as refusal:
                results[i] = refusal.of(w.product_id)
        for i in _superseded(items, list(checked)):
            results[i] = WriteResult(items[i].product_id, "superseded")
            del checked[i]
        existing = self._existing([items[i] for i in checked])
        todo: list[_Item] = []
        for i, fields in checked.items():
            w = items[i]
            started: _Item | WriteOutcome
            try:
                started = self._start(i, w, fields, existing.get(w.product_id))
            except Refusal as refusal:
                started = refusal.of(w.product_id)
            if isinstance(started, _Item):
                todo.append(started)
            else:
                results[i] = started
        prepared = Prepared(results)
        self._embed(todo, prepared)
        return prepared

    def commit(self, prepared: Prepared) -> list[WriteOutcome]:
        results = prepared.results
        points = [it.point for it in prepared.ready if it.point is not None]
        stale: set[str] = set()
        if points:
            with timed("store", "upsert"):
                stale = set(self.store.upsert(points).stale)
        for it in prepared.ready:
            assert it.point is not None
            product, pid = it.point.product, it.point.product.product_id
            status: WriteStatus = "stale" if pid in stale else ("updated" if it.existing is not None else "created")
            results[it.index] = WriteResult(pid, status, product, product.image_version)
            if it.photo is not None and status != "stale":
                keep_photo(self.settings, product.image, it.photo)
        done = [r for r in results if r is not None]
        assert len(done) == len(results), "every item has a result"
        return done

    # --- the steps ------------------------------------------------------------------------------------
    def _existing(self, items: Sequence[ProductWrite]) -> dict[str, ProductPoint]:
        """The stored products among ``items`` (one call finds which exist; a new catalog reads nothing)."""
        if not items:
            return {}
        vectors = {w.product_id for w in items if w.image is None}  # a text update keeps the image vector
        with timed("store", "get"):
            known = self.store.content_hashes([w.product_id for w in items])
            found = {pid: self.store.get(pid, with_vectors=pid in vectors) for pid in known}
        return {pid: point for pid, point in found.items() if point is not None}

    def _start(
        self, index: int, w: ProductWrite, fields: ProductFields | None, existing: ProductPoint | None
    ) -> _Item | WriteResult:
        """Everything decided before the bytes are read; a result when nothing is left to do."""
        pid = w.product_id
        if fields is None:
            if existing is None:
                raise Refusal("unknown_product", f"no product {pid!r}: send its fields with the image")
            fields = fields_of(existing.product)
        if w.image is None:
            if existing is None:
                raise Refusal(
                    "no_image",
                    f"product {pid!r} is new and needs an image: send one with it (a URL, a catalog path or an upload)",
                )
            return _Item(index, w, fields, existing, existing.product.image_version)
        version = w.image_version if w.image_version is not None else now_version()
        if existing is not None and existing.product.image_version > version:
            stored = existing.product.image_version
            return WriteResult(pid, "stale", existing.product, version, stored_version=stored)
        return _Item(index, w, fields, existing, version)

    def _embed(self, todo: list[_Item], prepared: Prepared) -> None:
        """Embed what is left as one batch (a text update: its text only) and settle the category; what
        survives goes to ``prepared.ready``."""
        inputs = self._inputs([it for it in todo if it.write.image is not None], prepared.results)
        with timed("model", "image+text"):
            embedded = dict(zip(inputs, embed_products(list(inputs.values()), self.embedders), strict=True))
        for it in todo:
            out: ProductPoint | Refusal | None
            if it.write.image is not None:
                if it.index not in embedded:
                    continue  # refused or unchanged on the way
                out = embedded[it.index]
            else:
                assert it.existing is not None
                with timed("model", "text"):
                    out = reembed_text(it.existing, it.fields, self.embedders)
                if out is None:
                    stored = it.existing.product
                    prepared.results[it.index] = WriteResult(stored.product_id, "unchanged", stored, it.version)
                    continue
            try:
                if isinstance(out, Refusal):
                    raise out
                it.point = self._categorised(out, it.fields)
            except Refusal as refusal:
                prepared.results[it.index] = refusal.of(it.write.product_id)
                continue
            prepared.ready.append(it)

    def _inputs(self, images: list[_Item], results: list[WriteOutcome | None]) -> dict[int, ProductInput]:
        """The images' bytes (downloads overlap in threads), minus products stored unchanged."""
        with ThreadPoolExecutor(max(1, min(self.settings.jobs_fetch_threads, len(images)))) as pool:
            read = list(pool.map(self._read, images))
        inputs: dict[int, ProductInput] = {}
        for it, data in zip(images, read, strict=True):
            if isinstance(data, Refusal):
                results[it.index] = data.of(it.write.product_id)
                continue
            assert it.write.image is not None
            item = ProductInput(it.write.product_id, it.fields, data, it.write.image.ref, it.version)
            stored = it.existing.product if it.existing is not None else None
            if stored is not None and stored.content_hash == input_hash(item, self.embedders):
                results[it.index] = WriteResult(stored.product_id, "unchanged", stored, stored.image_version)
                continue
            inputs[it.index] = item
            it.photo = data if is_kept(it.write.image.ref) else None
        return inputs

    def _read(self, it: _Item) -> bytes | Refusal:
        assert it.write.image is not None
        try:
            return resolve_image(it.write.image, self.settings)
        except Refusal as refusal:
            return refusal

    def _categorised(self, point: ProductPoint, fields: ProductFields) -> ProductPoint:
        """The shop's category as given; none given: the classifier's best guess, marked as estimated."""
        if fields.category:
            update: dict[str, object] = {"category": fields.category, "category_estimated": False}
        elif self.estimator is None:
            raise Refusal(
                "no_category_model",
                "category is empty and no category classifier is loaded to estimate it "
                f"({self.estimator_problem}): send a category",
            )
        else:
            with timed("model", "category"):
                (best, _), *_ = self.estimator(point.vectors.get("image"), point.vectors.get("text"))
            update = {"category": best, "category_estimated": True}
        return ProductPoint(point.product.model_copy(update=update), point.vectors)


def delete_product(store: ProductStore, product_id: str, version: int | None = None) -> bool:
    """The one delete (the API's DELETE, the delete task): as of ``version`` (None: now), leaving a
    tombstone so that a write of an older version still in flight is refused as stale. True when the
    product existed. Needs no model, so the API deletes with the models missing."""
    check_product_id(product_id)
    return store.delete(product_id, now_version() if version is None else version)


def _superseded(items: Sequence[ProductWrite], indices: list[int]) -> list[int]:
    """Items a later one of the same product replaces (the highest image_version wins, the last on ties;
    no version means "now"), as running them one after the other would leave them."""

    def version(i: int) -> float:
        given = items[i].image_version
        return float("inf") if given is None else float(given)

    winner: dict[str, int] = {}
    for i in indices:
        best = winner.get(items[i].product_id)
        if best is None or version(i) >= version(best):
            winner[items[i].product_id] = i
    return sorted(set(indices) - set(winner.values()))
