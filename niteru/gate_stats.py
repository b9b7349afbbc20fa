"""Is a fall of the gate's measures real, or the noise of a few hundred sample queries?

Two rebuilds of an unchanged catalog differ (fastText on several threads trains a different model each
time, and tied scores come back in another order), and on a sample of 300 products a measure such as
colour consistency moves by one or two points between them. A gate that refused every such rebuild would
never swap. So a measure counts as fallen only when its fall is over the tolerance **and** a paired
bootstrap over the sample's queries (both collections answer the same queries) puts the fall above zero
with ``CONFIDENCE``: resample the queries with replacement, compute the measure on both sides from the
same resample, and take the lower quantile of the differences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from niteru.evaluation import QueryOutcome

CONFIDENCE = 0.95
RESAMPLES = 2000


def _parts(outcomes: Sequence[QueryOutcome], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the numerator and the denominator the pooled measure sums (``evaluation.measures``)."""
    one = np.ones(len(outcomes))
    if name == "p10":
        return np.array([o.p10 for o in outcomes], float), one
    if name == "variant_r1":
        return np.array([o.variant_rank == 1 for o in outcomes], float), one
    if name == "variant_r10":
        return np.array([o.variant_rank is not None for o in outcomes], float), one
    kept, total = f"{name}_kept", f"{name}_total"
    return (
        np.array([getattr(o, kept) for o in outcomes], float),
        np.array([getattr(o, total) for o in outcomes], float),
    )


def fall_lower_bound(
    live: Sequence[QueryOutcome], new: Sequence[QueryOutcome], name: str, *, seed: int = 0
) -> float | None:
    """The ``CONFIDENCE`` lower bound of (live - new) for measure ``name`` over the queries both sides
    answered (matched by product id); None when no resample could measure it."""
    by_id = {o.product_id: o for o in new}
    pairs = [(o, by_id[o.product_id]) for o in sorted(live, key=lambda o: o.product_id) if o.product_id in by_id]
    if not pairs:
        return None
    (ln, ld), (nn, nd) = _parts([a for a, _ in pairs], name), _parts([b for _, b in pairs], name)
    picks = np.random.default_rng(seed).integers(0, len(pairs), size=(RESAMPLES, len(pairs)))
    with np.errstate(invalid="ignore", divide="ignore"):
        falls = ln[picks].sum(1) / ld[picks].sum(1) - nn[picks].sum(1) / nd[picks].sum(1)
    falls = falls[np.isfinite(falls)]
    return float(np.quantile(falls, 1 - CONFIDENCE)) if len(falls) else None
