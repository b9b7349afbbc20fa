"""The look-alike side of the routing fit (issue 17): variant recall@1, colour and brand consistency of a
route's results, computed as ``niteru.evaluation`` does, and the check that keeps a route from losing them.

Precision@10 counts the label only; a route leaning on a vector trained on the label (joint) can raise it
while a re-listed product no longer finds its original, or the results stop keeping the query's colour or
brand (on catalog-dev the gate refused a fitted table for brand: 62.6 live, 55.2 new). So a route is
eligible only when, on the validation queries, it keeps each at least as well as the nearest *reference
mode* (what users could get before the fit: image only, text only, 50/50, the hand table; ``check``), less
a tolerance, unless the fall is within the noise:

- **Measure**: among a query's results in its subcategory, the share naming one of its colours
  (``lookalike.colours``), over the queries whose title names one; the same for the brand
  (``lookalike.brand_of``); the share of variants whose first result is their original (counted on their
  original's query). Pooled over the queries judged: kept / total, as ``evaluation.measures``.
- **Scope**: the queries judged (a category's, or half of them) when at least ``route_fit_lookalike_min_queries``
  of them name the attribute; else every validation query (a few queries' share is mostly noise).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from statistics import NormalDist

import numpy as np

from niteru.lookalike import ENGLISH_COLOURS, JAPANESE_COLOURS, brand_of, colours

ATTRIBUTES = ("colour", "brand", "variant")  # the rows of a route's counts: (kept, total) each
TIE = 1e-9
# One bit per colour name: a title's colours as an int64 mask, so "names one of the query's colours" is an AND.
COLOUR_BITS = {name: 1 << i for i, name in enumerate(sorted({*ENGLISH_COLOURS.values(), *JAPANESE_COLOURS.values()}))}

Figures = dict[str, float | str | None]


def attributes(titles: Sequence[str], shop_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each product's colours (a mask of ``COLOUR_BITS``, 0: names none) and brand (a code, -1: unknown)."""
    masks = np.array([sum(COLOUR_BITS[c] for c in colours(t)) for t in titles], np.int64)
    names = [brand_of(s, t) for s, t in zip(shop_ids, titles, strict=True)]
    codes = {b: i for i, b in enumerate(sorted({b for b in names if b is not None}))}
    return masks, np.array([-1 if b is None else codes[b] for b in names], np.int64)


def kept_counts(
    colour_masks: np.ndarray | None,
    brands: np.ndarray | None,
    subcategories: np.ndarray,
    queries: np.ndarray,
    hits: np.ndarray,
) -> np.ndarray:
    """Per query (columns): results in its subcategory naming one of its colours, those results when it
    names a colour (else 0), the same two for its brand: shape (4, queries). Zeros without attributes.
    (The fit appends the variant rows: its variant found first, and whether it has one.)"""
    out = np.zeros((4, len(queries)), np.float64)
    if colour_masks is None or brands is None:
        return out
    found = np.maximum(hits, 0)
    same = (subcategories[found] == subcategories[queries][:, None]) & (hits >= 0)
    wanted = colour_masks[queries]
    named = wanted != 0
    out[0] = (same & ((colour_masks[found] & wanted[:, None]) != 0)).sum(axis=1) * named
    out[1] = same.sum(axis=1) * named
    brand = brands[queries]
    known = brand >= 0
    out[2] = (same & (brands[found] == brand[:, None])).sum(axis=1) * known
    out[3] = same.sum(axis=1) * known
    return out


def pooled(counts: np.ndarray, mask: np.ndarray, attribute: str) -> float | None:
    """The attribute's consistency on the queries of ``mask`` (None: none of them has anything to count)."""
    i = 2 * ATTRIBUTES.index(attribute)
    total = float(counts[i + 1][mask].sum())
    return float(counts[i][mask].sum()) / total if total else None


def fall_bound(route: np.ndarray, reference: np.ndarray, scope: np.ndarray, attribute: str, z: float) -> float:
    """A one-sided lower confidence bound (``z`` standard errors) of the reference's value less the route's:
    the gate's rule (``niteru.gate_stats``: a fall counts only when it is above zero with confidence), its
    paired bootstrap replaced by the normal approximation of the same pooled ratios (a fit makes thousands of
    checks). Paired: both sides answer the same queries."""
    i = 2 * ATTRIBUTES.index(attribute)
    parts = []
    for counts in (reference, route):
        kept, total = counts[i][scope], counts[i + 1][scope]
        whole = float(total.sum())
        parts.append((kept - (float(kept.sum()) / whole) * total) / whole if whole else np.zeros(len(kept)))
    fall = (pooled(reference, scope, attribute) or 0.0) - (pooled(route, scope, attribute) or 0.0)
    return fall - z * float(np.sqrt(((parts[0] - parts[1]) ** 2).sum()))


def check(
    counts: np.ndarray,
    references: dict[str, tuple[np.ndarray, np.ndarray]],
    naming: dict[str, np.ndarray],
    mask: np.ndarray,
    min_queries: int,
    tolerances: dict[str, float],
    each_best: Collection[str] = (),
    confidences: dict[str, float] | None = None,
) -> tuple[bool, Figures]:
    """Whether a route (``counts``: ``kept_counts`` and the variant rows) keeps each attribute on the queries
    of ``mask`` at least as well as the nearest reference mode less the attribute's tolerance; with the
    figures (the route's value, the floor, the scope, the mode). ``references``: each mode's (objective,
    counts) per query; ``naming``: attribute -> which queries name it (a colour, a known brand, a variant).

    - **Scope**: ``mask``, or every query when fewer than ``min_queries`` of ``mask`` name the attribute.
    - **Nearest mode**: the modes trade one attribute for another (text keeps colour and loses re-listings,
      image the other way round), so the best of each is a point no route may reach, the modes included.
      The floor is the mode whose largest shortfall from that point is the smallest (ties: the better
      objective): a route eligible against it is at least as near the best of each as any mode users had.
      ``each_best``: the attributes whose floor is the best mode's instead (strict; with all three, often
      nothing is eligible).
    - **Noise** (``confidences``: per attribute, > 0): a route below a floor still passes unless its fall is
      above zero with that confidence (``fall_bound``), as in the gate; 0 (or absent): the point values
      alone decide."""
    scopes = {a: mask if int((mask & naming[a]).sum()) >= min_queries else np.ones_like(mask) for a in ATTRIBUTES}
    values = {label: {a: pooled(r, scopes[a], a) for a in ATTRIBUTES} for label, (_, r) in references.items()}
    best = {a: max((x for v in values.values() if (x := v[a]) is not None), default=None) for a in ATTRIBUTES}

    def shortfall(label: str) -> float:
        return max((b - (values[label][a] or 0.0) for a in ATTRIBUTES if (b := best[a]) is not None), default=0.0)

    nearest = min(references, key=lambda m: (round(shortfall(m), 9), -float(references[m][0][mask].mean())))
    ok = True
    figures: Figures = {"reference": nearest}
    for a in ATTRIBUTES:
        confidence = (confidences or {}).get(a, 0.0)
        z = NormalDist().inv_cdf(confidence) if confidence > 0 else 0.0
        mode = nearest
        if a in each_best:
            mode = max(references, key=lambda m, a=a: values[m][a] or 0.0)  # type: ignore[misc]
            figures[f"{a}_reference"] = mode
        target = values[mode][a]
        floor = None if target is None else target - tolerances[a]
        value = pooled(counts, scopes[a], a)
        # No result in the subcategory keeps nothing; a fall within the noise is no fall (confidence > 0).
        below = floor is not None and (value or 0.0) < floor - TIE
        if below and (z == 0 or fall_bound(counts, references[mode][1], scopes[a], a, z) > 0):
            ok = False
        figures |= {a: value, f"{a}_floor": floor, f"{a}_scope": "category" if scopes[a] is mask else "global"}
    return ok, figures
