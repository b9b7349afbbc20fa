"""The API's adapter to the core: what each endpoint calls, as plain blocking functions (the routers run
them off the event loop).

``Services`` holds what the lifespan loaded once: the models, the category classifier and the store. A
part that failed to load is ``None`` with its reason in ``problems``; the endpoints that need it answer
503, the others keep working (similar products only needs the store: the query vectors are stored).
Products are written by ``niteru.writes`` and similar products found by ``niteru.similar``; this module
adds what is HTTP's: which part is missing, the listing cache, a stale write as a 409.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from api.errors import ApiError, ServiceUnavailableError
from api.listing import Listing, ListingCache
from niteru.categorize import Estimator, estimate, estimator_of
from niteru.embedders import Embedders
from niteru.lexical import VECTOR as LEXICAL
from niteru.products import Product, ProductFields
from niteru.refusals import Refusal
from niteru.route_table import RouteTable
from niteru.settings import Settings
from niteru.similar import SimilarOptions, SimilarResult, UnknownProductError, similar_products
from niteru.store import Hit, ProductStore, SearchFilter
from niteru.timing import timed
from niteru.write_inputs import ImageSource, ProductWrite
from niteru.writes import ProductWriter, delete_product

if TYPE_CHECKING:
    from api.task_gateway import TaskGateway
    from embedding.category import CategoryModel
    from embedding.image import MobileNetEmbedder
    from embedding.joint import JointEmbedder
    from embedding.text import TextEmbedder
    from niteru.model_sync import ModelSync

PutStatus = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class Models:
    """The models a request uses, replaced as one reference: a request that took them never sees the new
    text model with the old classifier, or half a swap."""

    image: MobileNetEmbedder | None = None
    text: TextEmbedder | None = None
    category: CategoryModel | None = None
    routing: RouteTable | None = None  # the live collection's fitted routing table (niteru.route_table)
    joint: JointEmbedder | None = None  # of ``text``'s model (niteru.joint); None before a rebuild made one


@dataclass
class Services:
    settings: Settings
    models: Models = field(default_factory=Models)
    store: ProductStore | None = None
    problems: dict[str, str] = field(default_factory=dict)
    listing: ListingCache = field(default_factory=ListingCache)
    sync: ModelSync | None = None  # set when the store opened: follows rebuilds (niteru.model_sync)
    tasks: TaskGateway | None = None  # POST /v1/tasks

    @property
    def image(self) -> MobileNetEmbedder | None:
        return self.models.image

    @property
    def text(self) -> TextEmbedder | None:
        return self.models.text

    @property
    def category(self) -> CategoryModel | None:
        return self.models.category

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
        return estimator_of(self.category)

    def embedders(self, models: Models | None = None) -> Embedders:
        m = models or self.models  # one read: both models of the same moment
        if m.image is None:
            self.need_image()
        if m.text is None:
            self.need_text()
        assert m.image is not None and m.text is not None
        return Embedders(m.image, m.text, m.joint)

    def writer(self) -> ProductWriter:
        """The core's product write over this process's models, store and classifier."""
        models, problem = self.models, self.problems.get("category", "not trained")
        return ProductWriter(
            self.settings,
            self.need_store(),
            self.embedders(models),
            estimator_of(models.category),
            estimator_problem=problem,
        )

    def refresh_models(self, force: bool = False) -> None:
        """After a rebuild swapped the live collection: its text model and the new classifier, swapped in
        as one reference under the sync's lock. A text model that cannot load raises a transient
        ``model_unavailable`` refusal (the next check tries again)."""
        if self.sync is None or self.store is None or self.text is None:
            return
        with self.sync.lock:
            m = self.models
            assert m.text is not None
            reloaded = self.sync.check(self.store, m.text.version, force)
            if reloaded is not None:
                # The routing table belongs to the collection: the new one's, or none if it has none.
                self.models = replace(
                    m,
                    text=reloaded.text or m.text,
                    joint=reloaded.joint,
                    category=reloaded.category or m.category,
                    routing=reloaded.routing,
                )

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
            found = delete_product(self.need_store(), product_id)  # as of now: a tombstone refuses older writes
        if not found:
            raise UnknownProductError(product_id)
        self.listing.invalidate()

    def put_product(
        self,
        product_id: str,
        fields: ProductFields | None,
        image: ImageSource | None,
        image_version: int | None,
    ) -> tuple[Product, PutStatus]:
        """Create or replace a product (``niteru.writes``). Without an image an existing product keeps
        its image; without fields (an upload) its fields. A stale image is a 409 here."""
        self.refresh_models(force=True)  # never write a text vector of a model the live collection left
        result = self.writer().write(ProductWrite(product_id, fields, image, image_version))
        if result.status == "stale":
            raise result.stale_refusal()
        if result.status != "unchanged":
            self.listing.invalidate()
        assert result.product is not None and result.status in ("created", "updated", "unchanged")
        return result.product, result.status

    # --- search ----------------------------------------------------------------------------------------
    def similar(self, product_id: str, options: SimilarOptions) -> SimilarResult:
        self.check_k(options.k)
        with timed("store", "similar"):
            m = self.models
            estimator = estimator_of(m.category)
            return similar_products(self.need_store(), product_id, self.settings, options, estimator, m.routing)

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
                raise _no_words()
        if not vectors:
            raise ApiError(422, "give a text, an image or a product_id to categorise")
        with timed("model", "category"):
            return estimate(model, vectors.get("image"), vectors.get("text")), sorted(vectors)

    def search_image(self, image: bytes, k: int, category: str | None, diversity: float = 0.0) -> list[Hit]:
        self.check_k(k)
        model = self.need_image()
        store = self.need_store()
        with timed("model", "image"):
            vector = model.embed_one(image)  # a bad image raises a typed ImageError
        with timed("store", "search"):
            return store.search(
                {"image": vector}, {"image": 1.0}, k, SearchFilter(category=category), diversity=diversity
            )

    def search_text(self, text: str, k: int, category: str | None, diversity: float = 0.0) -> list[Hit]:
        self.check_k(k)
        model = self.need_text()
        store = self.need_store()
        with timed("model", "text"):
            vector = model.embed([text])[0]
        if not np.any(vector):
            raise _no_words()
        # The query is also a title: its words add their BM25 over the stored titles (niteru/lexical.py), as a
        # product's title does in a routed query. The store leaves it out where the collection has no titles'
        # vector (made with NITERU_LEXICAL off).
        weights = {"text": 1.0, LEXICAL: self.settings.search_text_lexical_weight}
        with timed("store", "search"):
            return store.search(
                {"text": vector}, weights, k, SearchFilter(category=category), diversity=diversity, title=text
            )


def _no_words() -> Refusal:
    return Refusal("text_has_no_words", "the text holds no word the text model knows")
