"""Migration between engines: Edge to qdrant-client (local mode standing in for a server) and back,
vectors and payloads intact, answers unchanged, nothing re-embedded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from niteru.settings import Settings
from niteru.store import Fusion, SearchFilter, open_store
from niteru.store.migrate import MigrationError, migrate
from tests.test_store import DIMS, make_point


def test_edge_to_qdrant_and_back_keeps_every_product_and_answer(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    points = [make_point(i, 10 + i, rng) for i in range(80)]
    edge = Settings(data_dir=tmp_path / "a", store_engine="edge")
    local = Settings(data_dir=tmp_path / "b", store_engine="qdrant")
    back = Settings(data_dir=tmp_path / "c", store_engine="edge", edge_indexing_threshold_kb=1)
    query, f = points[3].vectors, SearchFilter(category="food", exclude_product_ids=("p-3",))
    with open_store(edge) as source:
        source.ensure_collection(DIMS)
        source.upsert(points)
        expected = source.search(query, {"image": 1.0, "text": 0.3}, 10, f, Fusion.wsum)
        with open_store(local) as target:
            report = migrate(source, target, batch_size=17)
            assert report.products == 80 and report.switched and target.current_version() == report.target
            got = target.search(query, {"image": 1.0, "text": 0.3}, 10, f, Fusion.wsum)
            assert [h.product.product_id for h in got] == [h.product.product_id for h in expected]
            with open_store(back) as home:
                migrate(target, home)
                assert home.info()["indexed_vectors"] > 0  # the Edge target was indexed after the copy
                for p in points[::7]:
                    stored = home.get(p.product.product_id, with_vectors=True)
                    assert stored is not None and stored.product == p.product
                    np.testing.assert_allclose(stored.vectors["text"], p.vectors["text"], atol=1e-6)


def test_an_empty_source_is_refused_and_leaves_the_target_alone(tmp_path: Path) -> None:
    with (
        open_store(Settings(data_dir=tmp_path / "a", store_engine="edge")) as source,
        open_store(Settings(data_dir=tmp_path / "b", store_engine="qdrant")) as target,
    ):
        source.ensure_collection(DIMS)
        with pytest.raises(MigrationError, match="no products"):
            migrate(source, target)
        assert target.versions() == []
