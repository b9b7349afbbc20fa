"""Routing: which vectors a similar-products query leans on, and with which fusion, from the product's category.

The table of weights by category comes from one of three places, said in every route (``table``):

- ``override``: the ``route_weights`` setting, when it is set (it always wins);
- ``fitted``: the table the last rebuild fitted on its collection (``niteru.route_fit``), with the fusion
  rule it chose per category;
- ``default``: before any fit, BASE's finding written by hand (``DEFAULT_WEIGHTS``): fashion is told apart
  by its look, everything else by its words; a photo of a sake bottle finds soy sauce.

``mode=auto`` takes the product's own category when the shop gave it. When the category was estimated
(or a caller has only an estimate), the policies of the likely categories are blended by their
probabilities, so an uncertain product between fashion and cosmetics gets weights in between rather than
a coin flip. The fixed modes ignore the category: ``image``, ``text``, ``hybrid`` (50/50) and ``joint``
(the learned vector alone, ``niteru.joint``; ``auto`` gives it weight 0 until routing is fitted to it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from niteru.fusion import Fusion
from niteru.route_table import RouteTable
from niteru.settings import Settings

# The estimated categories that take part in a blend; their probabilities are renormalised.
BLEND_TOP = 3


class Mode(StrEnum):
    auto = "auto"
    image = "image"
    text = "text"
    hybrid = "hybrid"
    joint = "joint"


FIXED_WEIGHTS: dict[Mode, dict[str, float]] = {
    Mode.image: {"image": 1.0, "text": 0.0},
    Mode.text: {"image": 0.0, "text": 1.0},
    Mode.hybrid: {"image": 0.5, "text": 0.5},
    Mode.joint: {"joint": 1.0},
}

RouteSource = Literal["mode", "known", "estimated"]
TableSource = Literal["fitted", "override", "default"]

# The hand-written table of issue 5, used until a rebuild has fitted one.
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "fashion": {"image": 1.0, "text": 0.2},
    "cosmetics": {"image": 0.5, "text": 0.5},
    "*": {"image": 0.2, "text": 1.0},
}


@dataclass(frozen=True)
class Route:
    """The weights a query used and why: for ``explain`` and the relevance benchmark."""

    mode: Mode
    weights: dict[str, float]
    source: RouteSource
    category: str | None = None  # the category whose policy dominates (known, or the top estimate)
    probability: float | None = None  # 1.0 for a known category
    estimates: list[tuple[str, float]] = field(default_factory=list)
    table: TableSource | None = None  # where the weights came from (None: a fixed mode)
    table_version: str | None = None  # the fitted table's version
    basis: str | None = None  # a fitted row: its own fit, or why it is the global row
    fusion: Fusion | None = None  # the fitted row's fusion rule (None: the request's or the setting's)


def table_source(settings: Settings, fitted: RouteTable | None) -> TableSource:
    if settings.route_weights is not None:
        return "override"
    return "fitted" if fitted is not None else "default"


def policy(category: str, settings: Settings, fitted: RouteTable | None = None) -> dict[str, float]:
    """The routing table's row for ``category`` (its '*' row, or the fitted global row, for any category
    it does not name)."""
    if settings.route_weights is None and fitted is not None:
        return dict(fitted.row(category).weights)
    table = settings.route_weights if settings.route_weights is not None else DEFAULT_WEIGHTS
    row = table.get(category) or table.get("*") or {"image": 0.5, "text": 0.5}
    return {name: float(w) for name, w in row.items()}


def blend(
    estimates: Sequence[tuple[str, float]], settings: Settings, fitted: RouteTable | None = None
) -> dict[str, float]:
    """Probability-weighted average of the policies of the ``BLEND_TOP`` likeliest categories."""
    top = sorted(estimates, key=lambda e: -e[1])[:BLEND_TOP]
    total = sum(p for _, p in top)
    if total <= 0:
        return policy("*", settings, fitted)
    weights: dict[str, float] = {}
    for category, p in top:
        for name, w in policy(category, settings, fitted).items():
            weights[name] = weights.get(name, 0.0) + p / total * w
    return weights


def _sourced(r: Route, settings: Settings, fitted: RouteTable | None) -> Route:
    """``r`` with where its table came from; a fitted row's fusion and basis are those of the category
    whose policy dominates."""
    source = table_source(settings, fitted)
    if source != "fitted" or fitted is None:
        return replace(r, table=source)
    row = fitted.row(r.category)
    return replace(r, table=source, table_version=fitted.version, basis=row.basis, fusion=row.fusion)


def route(
    mode: Mode,
    settings: Settings,
    *,
    category: str | None = None,
    category_estimated: bool = False,
    estimates: Sequence[tuple[str, float]] = (),
    fitted: RouteTable | None = None,
) -> Route:
    """The route of a query: ``category`` is the product's stored one, ``estimates`` the classifier's
    probabilities (best first) when there are any, ``fitted`` the live collection's fitted table."""
    if mode is not Mode.auto:
        return Route(mode, dict(FIXED_WEIGHTS[mode]), "mode")
    if category and not category_estimated:
        return _sourced(Route(mode, policy(category, settings, fitted), "known", category, 1.0), settings, fitted)
    if estimates:
        best = max(estimates, key=lambda e: e[1])
        weights = blend(estimates, settings, fitted)
        return _sourced(Route(mode, weights, "estimated", best[0], best[1], list(estimates)), settings, fitted)
    # An estimated category stored without the classifier at hand (or nothing at all): its own row.
    return _sourced(
        Route(mode, policy(category or "*", settings, fitted), "estimated", category, None), settings, fitted
    )
