"""The reference modes of the routing fit (``niteru.route_fit``) and the eligibility of a route against them.

The reference modes are what users had before any fit: image only, text only, 50/50 and the hand table.
A fitted route is eligible only when it does not lose variant recall@1, colour or brand consistency
against the nearest of them (``niteru.route_looks.check``). The fit falls back to a reference mode, never
to an ineligible route, when no route is eligible.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from niteru.fusion import Fusion
from niteru.route_grid import Choice
from niteru.route_looks import ATTRIBUTES, Figures, check, pooled
from niteru.routing import policy
from niteru.settings import Settings


@dataclass(frozen=True)
class Measured:
    """A route's (or a reference mode's) figures on the validation data."""

    score: np.ndarray  # the objective, per query
    # (6, queries): route_looks.kept_counts, then how many of the query's variants found it first, of how many
    looks: np.ndarray


def reference_routes(names: Sequence[str], categories: Sequence[str], settings: Settings) -> dict[str, Choice]:
    """The modes users had before any fit, as routes over the fit's vectors: image only, text only, 50/50
    (the ``fusion`` setting, as ``mode=hybrid``), and the hand table's row of each category (``hand:<category>``,
    ``hand:*`` for any other; the ``route_weights`` setting when set, else ``routing.DEFAULT_WEIGHTS``)."""

    def choice(fusion: Fusion, weights: dict[str, float]) -> Choice | None:
        parts = tuple(float(weights.get(n, 0.0)) for n in names)
        return Choice(fusion, parts) if any(w > 0 for w in parts) else None

    made = {
        "image only": choice(Fusion.wsum, {"image": 1.0}),
        "text only": choice(Fusion.wsum, {"text": 1.0}),
        "50/50": choice(settings.fusion, {"image": 0.5, "text": 0.5}),
        **{f"hand:{c}": choice(settings.fusion, policy(c, settings)) for c in ("*", *categories)},
    }
    return {label: c for label, c in made.items() if c is not None}


def modes_of(refs: dict[str, Choice], category: str) -> dict[str, Choice]:
    """The reference routes one category's queries had: the fixed modes and the hand table's row of
    ``category`` (``*``: the row of any category it does not name)."""
    return {k: c for k, c in refs.items() if not k.startswith("hand:") or k == f"hand:{category}"}


def per_category(categories: np.ndarray, rows: dict[str, np.ndarray]) -> np.ndarray:
    """Each column (a query or a variant) taken from the row of its category ('*' for any other)."""
    out = rows["*"].copy()
    for category, values in rows.items():
        out[..., categories == category] = values[..., categories == category]
    return out


def reference_modes(
    refs: dict[str, Choice], measured: dict[Choice, Measured], query_categories: np.ndarray
) -> dict[str, Measured]:
    """The reference modes' figures; the hand table routes each query by its category's row."""
    modes = {label: measured[c] for label, c in refs.items() if not label.startswith("hand:")}
    hand = {label.removeprefix("hand:"): measured[c] for label, c in refs.items() if label.startswith("hand:")}
    if "*" in hand:
        modes["hand table"] = Measured(
            per_category(query_categories, {c: m.score for c, m in hand.items()}),
            per_category(query_categories, {c: m.looks for c, m in hand.items()}),
        )
    return modes


class Eligibility:
    """Whether a route keeps the look-alike measures of the best reference mode (module docstring)."""

    def __init__(
        self,
        measured: dict[Choice, Measured],
        modes: dict[str, Measured],
        naming: dict[str, np.ndarray],
        settings: Settings,
        enabled: bool = True,
        best_of: Collection[str] = (),
    ) -> None:
        """``best_of``: the attributes held at the best mode's value, with no tolerance and no noise allowance
        (the fit's strict rule); the others at the nearest mode's (or each best, by the setting) less their
        tolerance, within the noise."""
        self.measured, self.settings, self.naming, self.enabled = measured, settings, naming, enabled
        self.references = {label: (m.score, m.looks) for label, m in modes.items()}
        self.strict = tuple(a for a in ATTRIBUTES if a in best_of)
        every = settings.route_fit_lookalike_reference == "each best"
        self.each_best = ATTRIBUTES if every else self.strict
        tolerances = {
            "colour": settings.route_fit_lookalike_tolerance,
            "brand": settings.route_fit_lookalike_tolerance,
            "variant": settings.route_fit_variant_tolerance,
        }
        self.tolerances = {a: 0.0 if a in self.strict else t for a, t in tolerances.items()}
        self.confidences = {a: 0.0 if a in self.strict else settings.route_fit_lookalike_confidence for a in ATTRIBUTES}

    def __call__(self, choice: Choice, mask: np.ndarray) -> tuple[bool, Figures]:
        s = self.settings
        if not self.enabled:
            return True, {}
        ok, figures = check(
            self.measured[choice].looks,
            self.references,
            self.naming,
            mask,
            s.route_fit_lookalike_min_queries,
            self.tolerances,
            self.each_best,
            self.confidences,
        )
        return ok, {**figures, "floors": "best mode: " + ", ".join(self.strict) if self.strict else "nearest mode"}

    def fallback(self, candidates: dict[str, Choice], mask: np.ndarray) -> tuple[str, Choice]:
        """The best of reference modes: an eligible one first, then by the objective on ``mask``."""
        return max(
            candidates.items(), key=lambda kv: (self(kv[1], mask)[0], float(self.measured[kv[1]].score[mask].mean()))
        )


def mode_figures(m: Measured, mask: np.ndarray) -> dict[str, float | None]:
    """A reference mode's figures on the queries of ``mask`` (for the table's info)."""
    return {"score": float(m.score[mask].mean()), **{a: pooled(m.looks, mask, a) for a in ATTRIBUTES}}
