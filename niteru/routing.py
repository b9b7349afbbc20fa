"""Routing: which vectors a similar-products query leans on, from the product's category.

BASE's finding, and the default policy (``route_weights`` in settings): fashion is told apart by its
look, everything else (food, cosmetics, home...) by its words; a photo of a sake bottle finds soy sauce.

``mode=auto`` takes the product's own category when the shop gave it. When the category was estimated
(or a caller has only an estimate), the policies of the likely categories are blended by their
probabilities, so an uncertain product between fashion and cosmetics gets weights in between rather than
a coin flip. The fixed modes ignore the category: ``image``, ``text``, ``hybrid`` (50/50) and ``joint``
(the learned vector alone, ``niteru.joint``; ``auto`` gives it weight 0 until routing is fitted to it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

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


@dataclass(frozen=True)
class Route:
    """The weights a query used and why: for ``explain`` and the relevance benchmark."""

    mode: Mode
    weights: dict[str, float]
    source: RouteSource
    category: str | None = None  # the category whose policy dominates (known, or the top estimate)
    probability: float | None = None  # 1.0 for a known category
    estimates: list[tuple[str, float]] = field(default_factory=list)


def policy(category: str, settings: Settings) -> dict[str, float]:
    """The routing table's row for ``category`` ('*' for any category it does not name)."""
    table = settings.route_weights
    row = table.get(category) or table.get("*") or {"image": 0.5, "text": 0.5}
    return {"image": float(row.get("image", 0.0)), "text": float(row.get("text", 0.0))}


def blend(estimates: Sequence[tuple[str, float]], settings: Settings) -> dict[str, float]:
    """Probability-weighted average of the policies of the ``BLEND_TOP`` likeliest categories."""
    top = sorted(estimates, key=lambda e: -e[1])[:BLEND_TOP]
    total = sum(p for _, p in top)
    if total <= 0:
        return policy("*", settings)
    weights = {"image": 0.0, "text": 0.0}
    for category, p in top:
        for name, w in policy(category, settings).items():
            weights[name] += p / total * w
    return weights


def route(
    mode: Mode,
    settings: Settings,
    *,
    category: str | None = None,
    category_estimated: bool = False,
    estimates: Sequence[tuple[str, float]] = (),
) -> Route:
    """The route of a query: ``category`` is the product's stored one, ``estimates`` the classifier's
    probabilities (best first) when there are any."""
    if mode is not Mode.auto:
        return Route(mode, dict(FIXED_WEIGHTS[mode]), "mode")
    if category and not category_estimated:
        return Route(mode, policy(category, settings), "known", category, 1.0)
    if estimates:
        best = max(estimates, key=lambda e: e[1])
        return Route(mode, blend(estimates, settings), "estimated", best[0], best[1], list(estimates))
    # An estimated category stored without the classifier at hand (or nothing at all): its own row.
    return Route(mode, policy(category or "*", settings), "estimated", category, None)
