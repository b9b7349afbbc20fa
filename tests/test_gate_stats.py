"""The gate counts a fall only when it is over the tolerance and beyond the sample's noise."""

from __future__ import annotations

from niteru.evaluation import QueryOutcome
from niteru.gate import falls
from niteru.gate_stats import fall_lower_bound


def outcome(i: int, p10: float, rank: int | None, colour: tuple[int, int]) -> QueryOutcome:
    return QueryOutcome(f"p{i:04d}", "fashion", p10, rank, colour[0], colour[1], 0, 0)


def test_a_fall_of_every_query_is_real_and_refused() -> None:
    live = [outcome(i, 0.9, 1, (4, 10)) for i in range(300)]
    new = [outcome(i, 0.6, 1 if i % 2 else 5, (1, 10)) for i in range(300)]
    fell, bounds = falls(live, new, tolerance=0.01)
    assert set(fell) == {"p10", "variant_r1", "colour"}
    assert abs(fell["p10"] - 0.3) < 1e-9 and bounds["p10"] is not None and bounds["p10"] > 0.25
    assert "brand" not in bounds  # no query knew a brand on either side: nothing to fall


def test_a_small_fall_within_the_noise_of_the_sample_is_not_counted() -> None:
    """What two rebuilds of an unchanged catalog look like: the queries' colour shares move up and down a
    lot, pooled 2.5 points lower: over a 1-point tolerance, not beyond the noise of 300 queries."""
    live = [outcome(i, 0.8, 1, (4, 8)) for i in range(300)]
    new = [outcome(i, 0.8, 1, (7 if i < 140 else 1, 8)) for i in range(300)]
    assert abs((1200 - (140 * 7 + 160)) / 2400 - 0.025) < 1e-12
    bound = fall_lower_bound(live, new, "colour")
    assert bound is not None and bound < 0
    assert falls(live, new, tolerance=0.01)[0] == {}
    # The same fall on every query alike is no noise: it is counted.
    steady = [outcome(i, 0.8, 1, (3 if i % 5 else 4, 8)) for i in range(300)]
    assert "colour" in falls(live, steady, tolerance=0.01)[0]


def test_equal_sides_and_a_fall_within_the_tolerance_pass() -> None:
    live = [outcome(i, 0.7 + 0.001 * (i % 7), 1, (3, 9)) for i in range(100)]
    assert falls(live, live, tolerance=0.01)[0] == {}
    lower = [outcome(i, o.p10 - 0.005, 1, (3, 9)) for i, o in enumerate(live)]
    assert falls(live, lower, tolerance=0.01)[0] == {}
    assert fall_lower_bound([], lower, "p10") is None
