"""Request and response bodies of the API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from niteru.products import MAX_VERSION, NonBlank, Product, ProductFields
from niteru.routing import Route
from niteru.similar import Explanation, SimilarResult
from niteru.store import Hit


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
    category_estimated: bool
    subcategory: str
    price: float | None
    image: str
    image_version: int
    image_model_version: str
    text_model_version: str
    joint_model_version: str | None = None
    updated_at: datetime

    @classmethod
    def of(cls, product: Product) -> ProductOut:
        return cls.model_validate(product.model_dump())


class ProductSummary(BaseModel):
    """A product in the listing (the web page's grid)."""

    product_id: str
    title: str
    category: str
    subcategory: str
    shop_id: str
    price: float | None
    image: str


class ProductList(BaseModel):
    total: int = Field(description="Products matching the category filter.")
    offset: int
    categories: dict[str, int] = Field(description="Every category in the store, with its product count.")
    items: list[ProductSummary]


class PutResult(ProductOut):
    status: Literal["created", "updated", "unchanged"]


class Explain(BaseModel):
    """Why a result scored what it did (``explain=true``). ``fused_score`` equals the sum of
    ``contributions``: for wsum each vector's weight (normalised to sum to 1) times its cosine, plus, when
    the route weighs titles (``lexical``), that weight times the BM25 score of the two titles; for
    wrrf/rrf ``1 / ((rank + 1) / w + k - 1)`` per list the product is in (rank from 0); for dbsf each
    list's score scaled by that list's mean +- 3 sd. A single-vector query's score is its cosine."""

    image_score: float | None = Field(description="Cosine similarity of the image vectors (None: not asked).")
    text_score: float | None = Field(description="Cosine similarity of the text vectors (None: not asked).")
    joint_score: float | None = Field(None, description="Cosine similarity of the joint vectors (None: not asked).")
    lexical_score: float | None = Field(
        None, description="BM25 score of the result's title for the query's (None: the route weighs no titles)."
    )
    fused_score: float
    contributions: dict[str, float]
    ranks: dict[str, int | None] = Field(description="1-based rank in each vector's candidate list.")


class Match(BaseModel):
    """A product in a result list, with its score: the cosine for one vector (search by photo), the fusion's
    score otherwise; a title bonus (search by text, routes that weigh titles) adds weight x BM25 to it."""

    product_id: str
    score: float
    shop_id: str
    title: str
    category: str
    category_estimated: bool = False
    subcategory: str
    price: float | None
    image: str
    explain: Explain | None = None

    @classmethod
    def of(cls, hit: Hit, explanation: Explanation | None = None) -> Match:
        p = hit.product
        explain = None
        if explanation is not None:
            explain = Explain(
                image_score=explanation.scores.get("image"),
                text_score=explanation.scores.get("text"),
                joint_score=explanation.scores.get("joint"),
                lexical_score=explanation.scores.get("lexical"),
                fused_score=hit.score,
                contributions=explanation.contributions,
                ranks=explanation.ranks,
            )
        return cls(
            product_id=p.product_id,
            score=hit.score,
            shop_id=p.shop_id,
            title=p.title,
            category=p.category,
            category_estimated=p.category_estimated,
            subcategory=p.subcategory,
            price=p.price,
            image=p.image,
            explain=explain,
        )


class CategoryEstimate(BaseModel):
    category: str
    probability: float


class RouteOut(BaseModel):
    """The route a similar-products query took."""

    mode: str
    source: str = Field(description="mode (a fixed mode), known (the shop's category) or estimated.")
    category: str | None
    probability: float | None
    weights: dict[str, float] = Field(description="Weight of each vector (0: not asked).")
    estimates: list[CategoryEstimate] = Field(default_factory=list)
    table: str | None = Field(
        description="mode=auto: where the weights came from: fitted (the table the last rebuild fitted), "
        "override (the route_weights setting) or default (the hand-written table, before any fit); null for "
        "a fixed mode."
    )
    table_version: str | None = Field(description="The fitted table's version (collection@time of the fit).")
    basis: str | None = Field(
        description="A fitted row: 'fitted' (the category's own fit) or why it is the global fitted row."
    )

    @classmethod
    def of(cls, route: Route) -> RouteOut:
        return cls(
            mode=route.mode.value,
            source=route.source,
            category=route.category,
            probability=route.probability,
            weights=route.weights,
            estimates=[CategoryEstimate(category=c, probability=p) for c, p in route.estimates],
            table=route.table,
            table_version=route.table_version,
            basis=route.basis,
        )


class SimilarOut(BaseModel):
    product_id: str
    mode: str
    fusion: str
    weights: dict[str, float] = Field(description="Weight of each vector in this query (0: not asked).")
    route: RouteOut
    items: list[Match]

    @classmethod
    def of(cls, result: SimilarResult) -> SimilarOut:
        explanations: list[Explanation | None] = list(result.explanations) or [None] * len(result.hits)
        return cls(
            product_id=result.product_id,
            mode=result.route.mode.value,
            fusion=result.fusion.value,
            weights=result.route.weights,
            route=RouteOut.of(result.route),
            items=[Match.of(h, e) for h, e in zip(result.hits, explanations, strict=True)],
        )


class CategorizeOut(BaseModel):
    categories: list[CategoryEstimate] = Field(description="The likeliest coarse categories, best first.")
    used: list[str] = Field(description="The vectors the estimate came from: image, text or both.")
    model_version: str


DIVERSITY = (
    "Maximal marginal relevance, 0 (off) to 1: trade similarity for variety among the results, so one "
    "product's variants or one shop's near-copies do not fill the page."
)


class TextSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: NonBlank = Field(max_length=20_000)
    k: int = Field(10, ge=1)
    category: str | None = None
    diversity: float = Field(0.0, ge=0, le=1, allow_inf_nan=False, description=DIVERSITY)


class SearchOut(BaseModel):
    items: list[Match]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
    store: dict[str, str | int | None] = Field(default_factory=dict)
