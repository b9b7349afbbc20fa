"""The routing fit's look-alike eligibility (niteru/route_looks.py, route_refs.py, route_fit.fit_table) on small
synthetic collections: pure numpy, so in the fast tier.

Every product is in one category ("things", routed by the hand table's '*' row) of 4 subcategories x 30.
Its title names a colour and (in the last test) a brand; the vectors are built so that what each route keeps
follows from how they were made.
"""

from __future__ import annotations

import numpy as np

from niteru.route_fit import fit_table
from niteru.route_grid import FitData, Variants
from niteru.route_looks import attributes, check, kept_counts
from niteru.settings import Settings

SUBS, PER_SUB = 4, 30
COLOURS = ("red", "blue", "green", "black", "white", "pink")
BRANDS = ("acme", "bolt", "crux", "dyna", "echo", "fizz", "gale", "halo", "iris", "jade")


def unit(m: np.ndarray) -> np.ndarray:
    return np.asarray(m / np.linalg.norm(m, axis=1, keepdims=True), np.float32)


def collection(vectors: dict[str, np.ndarray], colours: int, brands: int = 0, *, looks: bool = True) -> FitData:
    """Product i: subcategory i // 30, colour (i % 30) // (30 // colours), brand i % brands (0: the title names
    none). ``looks=False``: the titles' colours and brands unknown (the fit counts the label alone)."""
    n = SUBS * PER_SUB
    titles = [
        f"{BRANDS[i % brands] if brands else ''} {COLOURS[(i % PER_SUB) // (PER_SUB // colours)]} item {i}"
        for i in range(n)
    ]
    shops = [BRANDS[i % brands] if brands else "shop" for i in range(n)]
    colour_masks, brand_codes = attributes(titles, shops) if looks else (None, None)
    return FitData(
        [f"p{i:03d}" for i in range(n)],
        ["things"] * n,
        np.arange(n) // PER_SUB,
        np.ones(n, bool),
        vectors,
        colour_masks,
        brand_codes,
    )


def copies(vectors: dict[str, np.ndarray]) -> Variants:
    """Every product re-listed unchanged: each finds its original first, whatever the route (the look-alike
    check runs only when the fit has variants, as the rebuild's does)."""
    return Variants(np.arange(len(next(iter(vectors.values())))), vectors)


def basis(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return unit(rng.normal(size=(k, n)))


def test_attributes_and_counts_measure_as_the_evaluation_does() -> None:
    masks, brands = attributes(["Acme Red Shirt", "Bolt Navy Cap", "Plain Cup"], ["acme", "other", "acme"])
    assert masks[0] != 0 and masks[2] == 0 and (masks[0] & masks[1]) == 0  # red; navy; no colour
    assert brands[0] >= 0 and brands[1] == -1 and brands[2] == -1  # a brand counts only when the title names it
    subs = np.array([0, 0, 0])
    # query 0's results: 1 (same subcategory, other colour, no brand), 2 (same subcategory, no colour), none
    counts = kept_counts(masks, brands, subs, np.array([0]), np.array([[1, 2, -1]]))
    assert counts[:, 0].tolist() == [0, 2, 0, 2]


def test_a_route_that_gains_precision_but_loses_colour_is_not_chosen() -> None:
    """``joint`` tells the subcategories apart perfectly and ignores colour; ``image`` finds the same colour
    (in any subcategory, so its precision is lower) and ``text`` is noise. By precision alone the fit leans
    on joint; with the colours known it keeps the colour of the reference mode that keeps it (image only)."""
    rng = np.random.default_rng(7)
    n = SUBS * PER_SUB
    sub, colour = np.arange(n) // PER_SUB, (np.arange(n) % PER_SUB) // 5
    subs, cols = basis(16, SUBS, rng), basis(16, len(COLOURS), rng)
    vectors = {
        "image": unit(cols[colour] + 0.3 * subs[sub] + 0.05 * rng.normal(size=(n, 16))),
        "text": unit(rng.normal(size=(n, 16))),
        "joint": unit(subs[sub] + 0.05 * rng.normal(size=(n, 16))),
    }
    settings = Settings(route_fit_validation_share=0.5, route_fit_min_queries=5)
    label_only = fit_table(collection(vectors, 6, looks=False), settings, "c")
    kept = fit_table(collection(vectors, 6), settings, "c", copies(vectors))
    # without variants (niteru ingest) there is no look-alike check
    assert fit_table(collection(vectors, 6), settings, "c").global_row.weights == label_only.global_row.weights
    assert label_only.global_row.weights["joint"] > 0 and label_only.global_row.score == 1.0
    row = kept.global_row
    assert row.lookalike["reference"] == "image only"
    kept_colour, floor = row.lookalike["colour"], row.lookalike["colour_floor"]
    assert isinstance(kept_colour, float) and isinstance(floor, float) and kept_colour >= floor
    # the label-only choice loses colour against image only: it is not eligible, so precision was given up
    assert row.weights != label_only.global_row.weights and (row.score or 0) < 1.0
    assert kept.info["references"]["image only"]["colour"] > kept.info["references"]["50/50"]["colour"]
    assert kept.rows["things"].lookalike["colour_scope"] == "category"


def traded() -> dict[str, np.ndarray]:
    """``image`` finds the same colour (3 colours: 9 others per subcategory), ``text`` the same brand (10
    brands: 2 others), both within the subcategory (precision 1.0 everywhere): no top 10 holds a product's
    colour mates and its brand mates, so no route keeps the best of both."""
    rng = np.random.default_rng(11)
    n = SUBS * PER_SUB
    sub, colour, brand = np.arange(n) // PER_SUB, (np.arange(n) % PER_SUB) // 10, np.arange(n) % 10
    subs, cols, brands = basis(32, SUBS, rng), basis(32, 3, rng), basis(32, 10, rng)
    return {
        "image": unit(cols[colour] + 2 * subs[sub] + 0.02 * rng.normal(size=(n, 32))),
        "text": unit(brands[brand] + 2 * subs[sub] + 0.02 * rng.normal(size=(n, 32))),
    }


def test_when_no_route_is_eligible_the_fit_falls_back_to_a_reference_mode() -> None:
    """``image`` finds the same colour (3 colours: 9 others per subcategory), ``text`` the same brand (10
    brands: 2 others), both within the subcategory (precision 1.0 everywhere). No top 10 holds the 9 and the
    2 (a product's colour mates and brand mates are others), so no route reaches the best of each (``each
    best``): not even a reference mode. The fit then takes a reference mode, never an ineligible grid route;
    with the default rule (the nearest mode) routes are eligible again."""
    vectors = traded()
    strict = Settings(
        route_fit_validation_share=0.5, route_fit_min_queries=5, route_fit_lookalike_reference="each best"
    )
    table = fit_table(collection(vectors, 3, 10), strict, "c", copies(vectors))
    assert table.info["eligible"] == 0
    assert table.global_row.basis.startswith("global: reference mode ")
    references = {(1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.2, 1.0)}  # image, text, 50/50, the hand table's '*'
    for row in (table.global_row, table.rows["things"]):
        assert (row.weights["image"], row.weights["text"]) in references
    nearest = fit_table(
        collection(vectors, 3, 10),
        strict.model_copy(update={"route_fit_lookalike_reference": "nearest mode"}),
        "c",
        copies(vectors),
    )
    assert nearest.info["eligible"] > 0 and nearest.global_row.basis == "global"


def test_the_floor_is_the_nearest_reference_mode_not_the_best_of_each() -> None:
    """Two modes trade colour for brand; a third is a little short on both. The nearest mode (smallest
    largest shortfall from the best of each) sets the floor."""
    everyone = np.ones(2, bool)
    naming = dict.fromkeys(("colour", "brand", "variant"), everyone)

    def counts(colour: int, brand: int) -> np.ndarray:  # per query: kept of 10, both queries alike
        return np.array([[colour] * 2, [10] * 2, [brand] * 2, [10] * 2, [0] * 2, [0] * 2], np.float64)

    score = np.ones(2)
    modes = {"colourful": (score, counts(9, 2)), "branded": (score, counts(2, 9)), "balanced": (score, counts(7, 7))}
    tolerances = {"colour": 0.0, "brand": 0.0, "variant": 0.0}
    ok, figures = check(counts(7, 7), modes, naming, everyone, 1, tolerances)
    assert ok and figures["reference"] == "balanced" and figures["colour_floor"] == 0.7
    assert not check(counts(8, 6), modes, naming, everyone, 1, tolerances)[0]  # loses brand against it
    assert not check(counts(7, 7), modes, naming, everyone, 1, tolerances, each_best=("colour", "brand", "variant"))[0]
    # too few queries name the attribute in the mask: judged on every query instead
    assert check(counts(7, 7), modes, naming, np.array([True, False]), 2, tolerances)[1]["colour_scope"] == "global"


def relisted(seed: int) -> tuple[dict[str, np.ndarray], Variants]:
    """``image`` carries each product's identity (and its subcategory a little), ``joint`` its subcategory (and
    its identity a little), ``text`` is noise, copied unchanged to the variants; the variants' photos are
    re-shot (noise), their joint vectors drawn again. The more a route leans on joint, the better its
    precision and the more re-listings miss their original."""
    rng = np.random.default_rng(seed)
    n = SUBS * PER_SUB
    sub = np.arange(n) // PER_SUB
    subs, identity = basis(32, SUBS, rng), unit(rng.normal(size=(n, 32)))

    def joint() -> np.ndarray:
        return unit(subs[sub] + 0.35 * identity + 0.3 * rng.normal(size=(n, 32)))

    vectors = {"image": unit(identity + 0.6 * subs[sub]), "joint": joint(), "text": unit(rng.normal(size=(n, 32)))}
    reshot = unit(identity + 0.6 * subs[sub] + 0.45 * rng.normal(size=(n, 32)))
    return vectors, Variants(np.arange(n), {"image": reshot, "text": vectors["text"], "joint": joint()})


def test_where_a_route_keeps_the_best_modes_values_only_such_routes_are_eligible() -> None:
    """The nearest-mode floor, less its tolerance and within the noise, lets the fit take the best precision
    just below the best mode's variant recall@1 (1 re-listing of 61 lost); held at the best mode's value, the
    fit gives up a little precision and loses none."""
    vectors, variants = relisted(1)
    loose = Settings(route_fit_validation_share=0.5, route_fit_min_queries=5, route_fit_best_mode=())
    strict = loose.model_copy(update={"route_fit_best_mode": ("variant", "colour")})
    before = fit_table(collection(vectors, 6), loose, "c", variants)
    after = fit_table(collection(vectors, 6), strict, "c", variants)
    best = max(m["variant"] for m in after.info["references"].values())
    assert before.global_row.lookalike["floors"] == "nearest mode"
    assert (before.global_row.lookalike["variant"] or 0) < best
    row = after.global_row
    assert row.lookalike["floors"] == "best mode: colour, variant"
    assert (row.lookalike["variant"] or 0) >= best and row.lookalike["variant_floor"] == best
    assert row.lookalike["colour"] >= row.lookalike["colour_floor"]  # type: ignore[operator]
    assert 0 < (before.global_row.score or 0) - (row.score or 0) < 0.05
    assert after.info["best_mode"] == ["variant", "colour"]


def test_where_no_route_keeps_the_best_modes_values_the_nearest_mode_sets_the_floors() -> None:
    """Colour and brand traded as in the fallback test above: no route keeps the best of both, so the strict
    rule finds nothing and the nearest mode's floors decide, as they would without it."""
    vectors = traded()
    settings = Settings(route_fit_validation_share=0.5, route_fit_min_queries=5)
    table = fit_table(
        collection(vectors, 3, 10),
        settings.model_copy(update={"route_fit_best_mode": ("colour", "brand")}),
        "c",
        copies(vectors),
    )
    nearest = fit_table(
        collection(vectors, 3, 10),
        settings.model_copy(update={"route_fit_best_mode": ()}),
        "c",
        copies(vectors),
    )
    assert table.info["eligible"] > 0 and table.global_row.basis == "global"
    for row in (table.global_row, table.rows["things"]):
        assert row.lookalike["floors"] == "nearest mode"
    assert table.global_row.weights == nearest.global_row.weights
