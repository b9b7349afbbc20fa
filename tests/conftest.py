"""Shared fixtures: the real development catalog beside the checkout, and settings for tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
CATALOG_DEV = Path(os.environ.get("NITERU_TEST_CATALOG", REPO.parent / "shared" / "data" / "catalog-dev"))
TEXT_DATA = CATALOG_DEV.parent / "text"

# Session fixtures of the store, ingest and API tests (a small real catalog slice, ingested once).
pytest_plugins = ["tests.store_fixtures"]


@pytest.fixture(scope="session")
def catalog_dir() -> Path:
    if not (CATALOG_DEV / "products.csv").is_file():
        pytest.fail(f"the development catalog is missing at {CATALOG_DEV} (set NITERU_TEST_CATALOG)")
    return CATALOG_DEV
