"""Shared fixtures (the real development catalog beside the checkout) and the test tiers.

``make test-fast`` runs ``pytest -m "not slow"``. A test is slow when it loads or trains a real model:
rather than trusting every such test to carry the marker, ``pytest_collection_modifyitems`` marks it
from what it uses, so a new test on the real-model fixtures cannot leak into the fast tier.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
CATALOG_DEV = Path(os.environ.get("NITERU_TEST_CATALOG", REPO.parent / "shared" / "data" / "catalog-dev"))
TEXT_DATA = CATALOG_DEV.parent / "text"

# Fixtures that load the real models (MobileNet weights, fastText trained on the slice): any test that
# uses one, directly or through another fixture, is slow.
REAL_MODEL_FIXTURES = frozenset({"ingested", "embedders"})
# Markers that say the same: the prepared ImageNet weights are only read by real-model tests.
SLOW_MARKERS = frozenset({"weights"})
# Wall-clock budget of the fast tier (seconds); going over is reported, not failed (the cores are shared).
FAST_TIER_BUDGET = 60.0
_STARTED = pytest.StashKey[float]()

# Session fixtures of the store, ingest and API tests (a small real catalog slice, ingested once), and
# the fast API tests (real app, fake embedders, both engines).
pytest_plugins = ["tests.store_fixtures", "tests.fast_fixtures"]


@pytest.fixture(scope="session")
def catalog_dir() -> Path:
    if not (CATALOG_DEV / "products.csv").is_file():
        pytest.fail(f"the development catalog is missing at {CATALOG_DEV} (set NITERU_TEST_CATALOG)")
    return CATALOG_DEV


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark as slow every test that uses a real-model fixture or needs the weights (see the docstring)."""
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        marked = {m.name for m in item.iter_markers()}
        if uses & REAL_MODEL_FIXTURES or marked & SLOW_MARKERS:
            item.add_marker(pytest.mark.slow)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_STARTED] = time.monotonic()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Say when the fast tier went over its budget: a slow test may have slipped past the marking."""
    if config.option.markexpr != "not slow" or _STARTED not in config.stash:
        return
    took = time.monotonic() - config.stash[_STARTED]
    if took > FAST_TIER_BUDGET:
        terminalreporter.write_line(
            f"the fast tier took {took:.0f} s, over its {FAST_TIER_BUDGET:.0f} s budget (see --durations)",
            yellow=True,
            bold=True,
        )
