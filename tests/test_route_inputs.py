"""What the routing fit reads (niteru/route_fit.py ``fit_inputs``): the variants it asks for are spread over
every category of the validation queries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from niteru.fusion import Fusion
from niteru.products import Product
from niteru.route_fit import measure_all
from niteru.route_grid import VARIANT_ROUNDS, Choice, fit_inputs, validation_queries
from niteru.settings import Settings
from niteru.store import ProductPoint, open_store
from tests.test_route_fit import DIMS, catalog


@pytest.mark.parametrize("share", [60, 100])
def test_the_fit_asks_for_variants_of_every_category(tmp_path: Path, share: int) -> None:
    """``share`` of about 130 validation queries: under the pool's size, where a stride of len // n took the
    first n in category order and left the last category without variants."""
    settings = Settings(data_dir=tmp_path, route_fit_validation_share=0.5, route_fit_variants=share)
    asked: list[Product] = []

    def embed(products: Sequence[Product], seed: int) -> dict[str, ProductPoint]:
        asked.extend(products)
        rng = np.random.default_rng(0)
        return {p.product_id: ProductPoint(p, {n: rng.normal(size=d) for n, d in DIMS.items()}) for p in products}

    with open_store(settings) as store:
        store.ensure_collection(DIMS)
        store.upsert(catalog())
        data, variants = fit_inputs(store, settings, embed)
    assert len(asked) == len({p.product_id for p in asked}) == share
    pool = Counter(data.categories[i] for i in validation_queries(data, settings))
    asked_per_category = Counter(p.category for p in asked)
    for category, count in pool.items():  # each category its share of the variants
        assert abs(asked_per_category[category] - share * count / pool.total()) <= 2, (category, asked_per_category)
    assert variants is not None and set(variants.titles or []) == {p.title for p in asked}


def test_more_variants_than_queries_come_in_rounds_each_with_its_own_seed(tmp_path: Path) -> None:
    """Past the pool's size each validation query gets one more variant per round, made with the next seed;
    the fit counts every one of them on its original's query."""
    settings = Settings(data_dir=tmp_path, route_fit_validation_share=0.5, route_fit_variants=300, route_fit_seed=4)
    rounds: list[tuple[int, list[str]]] = []

    def embed(products: Sequence[Product], seed: int) -> dict[str, ProductPoint]:
        rounds.append((seed, [p.product_id for p in products]))
        rng = np.random.default_rng(seed)
        return {p.product_id: ProductPoint(p, {n: rng.normal(size=d) for n, d in DIMS.items()}) for p in products}

    with open_store(settings) as store:
        store.ensure_collection(DIMS)
        store.upsert(catalog())
        data, variants = fit_inputs(store, settings, embed)
    queries = validation_queries(data, settings)
    assert 100 < len(queries) < 150  # so 300 variants take three rounds
    assert [seed for seed, _ in rounds] == [5, 6, 7]
    assert [len(ids) for _, ids in rounds] == [len(queries), len(queries), 300 - 2 * len(queries)]
    assert all(len(set(ids)) == len(ids) for _, ids in rounds)
    assert variants is not None and len(variants.originals) == 300
    choice = Choice(Fusion.wsum, tuple(1.0 if n == "image" else 0.0 for n in data.vectors))
    looks = measure_all(data, queries, [choice], variants, settings)[choice].looks
    per_query = Counter(int(o) for o in variants.originals)
    assert looks[5].tolist() == [per_query[int(q)] for q in queries]
    assert (looks[4] <= looks[5]).all() and looks[5].sum() == 300
    rounds.clear()
    with open_store(settings) as store:  # asked for more: three rounds at most
        fit_inputs(store, settings.model_copy(update={"route_fit_variants": 5000}), embed)
    assert [len(ids) for _, ids in rounds] == [len(queries)] * VARIANT_ROUNDS == [len(queries)] * 3
