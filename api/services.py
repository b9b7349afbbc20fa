"""What the endpoints do, as plain blocking functions (the routers run them off the event loop).

``Services`` holds what the lifespan loaded once: the image model, the text model and the store. A part
that failed to load is ``None`` with its reason in ``problems``; the endpoints that need it answer 503,
the others keep working (similar products only needs the store: the query vectors are stored).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from api.errors import IMAGE_STATUS, ApiError, ServiceUnavailableError
from api.listing import Listing, ListingCache
from api.middleware import timed
from niteru.categorize import estimate
from niteru.embedders import Embedders, ItemFailure, ProductInput, embed_products, input_hash, reembed_text
from niteru.products import Product, ProductFields, now_version
from niteru.settings import Settings
from niteru.similar import Estimator, SimilarOptions, SimilarResult, UnknownProductError, similar_products
from niteru.store import Hit, ProductPoint, ProductStore, SearchFilter

if TYPE_CHECKING:
    from api.task_gateway import TaskGateway
    from embedding.category import CategoryModel
    from embedding.image import MobileNetEmbedder
    from embedding.text import TextEmbedder
    from jobs.work import JobContext
    from niteru.model_sync import ModelSync

PutStatus = Literal["created", "updated", "unchanged"]


@dataclass
class Services:
    settings: Settings
    image: MobileNetEmbedder | None = None
    text: TextEmbedder | None = None
    store: ProductStore | None = None
    category: CategoryModel | None = None
    problems: dict[str, str] = field(default_factory=dict)
    listing: ListingCache = field(default_factory=ListingCache)
    sync: ModelSync | None = None  # set when the store opened: follows rebuilds (niteru.model_sync)
    tasks: TaskGateway | None = None  # POST /v1/tasks

    # --- what each endpoint needs ---------------------------------------------------------------------
    def need_store(self) -> ProductStore:
        if self.store is None:
            raise ServiceUnavailableError(f"store unavailable: {self.problems.get('store', 'not opened')}")
        return self.store

    def need_image(self) -> MobileNetEmbedder:
        if self.image is None:
            raise ServiceUnavailableError(f"image model unavailable: {self.problems.get('image', 'not loaded')}")
        return self.image

    def need_text(self) -> TextEmbedder:
        if self.text is None:
            raise ServiceUnavailableError(f"text model unavailable: {self.problems.get('text', 'not loaded')}")
        return self.text

    def need_category(self) -> CategoryModel:
        if self.category is None:
            raise ServiceUnavailableError(
                f"category classifier unavailable: {self.problems.get('category', 'not loaded')}"
            )
        return self.category

    def estimator(self) -> Estimator | None:
        model = self.category
        if model is None:
            return None
        return lambda image, text: estimate(model, image, text)

    def refresh_models(self, force: bool = False) -> None:
        """After a rebuild swapped the live collection: its text model and the new classifier."""
        if self.sync is None or self.store is None or self.text is None:
            return
        reloaded = self.sync.check(self.store, self.text.version, force)
        if reloaded is not None:
            self.text = reloaded.text or self.text
            self.category = reloaded.category or self.category

    def job_context(self) -> JobContext:
        """The task functions' view of this process's models and store (the inline executor)."""
        from jobs.work import JobContext

        self.refresh_models(force=True)
        return JobContext(self.settings, Embedders(self.need_image(), self.need_text()), self.need_store())

    def check_k(self, k: int) -> None:
        if not 1 <= k <= self.settings.api_max_k:
            raise ApiError(422, f"k must be between 1 and {self.settings.api_max_k}, got {k}")

    # --- products --------------------------------------------------------------------------------------
    def list_products(self, category: str | None, offset: int, limit: int) -> Listing:
        if not 1 <= limit <= self.settings.api_max_k:
            raise ApiError(422, f"limit must be between 1 and {self.settings.api_max_k}, got {limit}")
        with timed("store", "list"):
            return self.listing.page(self.need_store(), category, offset, limit)

    def get_product(self, product_id: str) -> Product:
        with timed("store", "get"):
            point = self.need_store().get(product_id)
        if point is None:
            raise UnknownProductError(product_id)
        return point.product

    def delete_product(self, product_id: str) -> None:
        with timed("store", "delete"):
            found = self.need_store().delete(product_id)
        if not found:
            raise UnknownProductError(product_id)
        self.listing.invalidate()

    def put_product(
        self,
        product_id: str,
        fields: ProductFields,
        image: bytes | None,
        image_ref: str | None,
        image_version: int | None,
    ) -> tuple[Product, PutStatus]:
        """Create or replace a product; without image bytes an existing product keeps its image."""
        self.refresh_models(force=True)  # never write a text vector of a model the live collection left
        embedders = Embedders(self.need_image(), self.need_text())
        store = self.need_store()
        with timed("store", "get"):
            existing = store.get(product_id, with_vectors=image is None)
        if image is None:
            if existing is None:
                raise ApiError(
                    422,
                    f"product {product_id!r} is new and needs an image: give image_url or image_path, "
                    f"or upload one to PUT /v1/products/{product_id}/image",
                )
            point = self._reembed_text(existing, fields, embedders)
            if point is None:
                return existing.product, "unchanged"
        else:
            version = image_version if image_version is not None else now_version()
            if existing is not None and existing.product.image_version > version:
                raise _stale(product_id, existing.product.image_version, version)
            item = ProductInput(product_id, fields, image, image_ref or "", version)
            if existing is not None and existing.product.content_hash == input_hash(item, embedders):
                return existing.product, "unchanged"
            with timed("model", "image+text"):
                (result,) = embed_products([item], embedders)
            if isinstance(result, ItemFailure):
                raise _refused(result)
            point = result
        if not fields.category:
            point = self._estimated_category(point)
        with timed("store", "upsert"):
            outcome = store.upsert([point])
        if outcome.stale:  # another request stored a newer image meanwhile; the conditional write kept it
            raise _stale(product_id, None, point.product.image_version)
        self.listing.invalidate()
        return point.product, "created" if existing is None else "updated"

    def _estimated_category(self, point: ProductPoint) -> ProductPoint:
        """A product sent without a category gets the classifier's best guess, marked as estimated."""
        if self.category is None:
            raise ApiError(
                422,
                "category is empty and no category classifier is loaded to estimate it "
                f"({self.problems.get('category', 'not trained')}): send a category",
            )
        with timed("model", "category"):
            (best, _), *_ = estimate(self.category, point.vectors.get("image"), point.vectors.get("text"))
        product = point.product.model_copy(update={"category": best, "category_estimated": True})
        return ProductPoint(product, point.vectors)

    def _reembed_text(self, existing: ProductPoint, fields: ProductFields, e: Embedders) -> ProductPoint | None:
        """A text/price update: new text vector, the stored image vector and version (None: unchanged)."""
        with timed("model", "text"):
            result = reembed_text(existing, fields, e)
        if isinstance(result, ItemFailure):
            raise _refused(result)
        return result

    # --- search ----------------------------------------------------------------------------------------
    def similar(self, product_id: str, options: SimilarOptions) -> SimilarResult:
        self.check_k(options.k)
        with timed("store", "similar"):
            return similar_products(self.need_store(), product_id, self.settings, options, self.estimator())

    def categorize(
        self, text: str | None, image: bytes | None, product_id: str | None
    ) -> tuple[list[tuple[str, float]], list[str]]:
        """The likeliest categories, and which vectors they were estimated from."""
        model = self.need_category()
        vectors: dict[str, np.ndarray] = {}
        if product_id is not None:
            with timed("store", "get"):
                point = self.need_store().get(product_id, with_vectors=True)
            if point is None:
                raise UnknownProductError(product_id)
            vectors = dict(point.vectors)
        if image is not None:
            img = self.need_image()
            with timed("model", "image"):
                vectors["image"] = img.embed_one(image)
        if text is not None:
            with timed("model", "text"):
                vectors["text"] = self.need_text().embed([text])[0]
            if not np.any(vectors["text"]):
                raise ApiError(422, "the text holds no word the text model knows")
        if not vectors:
            raise ApiError(422, "give a text, an image or a product_id to categorise")
        with timed("model", "category"):
            return estimate(model, vectors.get("image"), vectors.get("text")), sorted(vectors)

    def search_image(self, image: bytes, k: int, category: str | None) -> list[Hit]:
        self.check_k(k)
        model = self.need_image()
        store = self.need_store()
        with timed("model", "image"):
            vector = model.embed_one(image)  # a bad image raises a typed ImageError
        with timed("store", "search"):
            return store.search({"image": vector}, {"image": 1.0}, k, SearchFilter(category=category))

    def search_text(self, text: str, k: int, category: str | None) -> list[Hit]:
        self.check_k(k)
        model = self.need_text()
        store = self.need_store()
        with timed("model", "text"):
            vector = model.embed([text])[0]
        if not np.any(vector):
            raise ApiError(422, "the text holds no word the text model knows")
        with timed("store", "search"):
            return store.search({"text": vector}, {"text": 1.0}, k, SearchFilter(category=category))


def _refused(failure: ItemFailure) -> ApiError:
    return ApiError(IMAGE_STATUS.get(failure.reason, 422), f"refused ({failure.reason}): {failure.message}")


def _stale(product_id: str, stored: int | None, given: int) -> ApiError:
    newer = f"version {stored}" if stored is not None else "a newer version"
    return ApiError(409, f"product {product_id!r} already has a newer image ({newer} > {given}); nothing was written")
