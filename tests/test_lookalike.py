"""The look-alike measures and the rebuild's gate on a real store of real catalog rows, with fake embedders
(the models are not under test here; tests/test_rebuild_gate.py runs the gate with the real ones).

The store is built by the real ingest; a second collection holding the same products with their vectors
shuffled between products stands for a rebuild that made relevance worse.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from niteru.evaluation import (
    MIN_PER_CATEGORY,
    Variant,
    embed_variants,
    evaluate,
    fixed_sample,
    make_variants,
    summarise,
)
from niteru.fetch import read_image_path
from niteru.gate import format_report, gate, save_report, serving_figures
from niteru.ingest import ingest_catalog
from niteru.lookalike import brand_of, colours, variant_fields, variant_image
from niteru.products import Product, ProductFields
from niteru.routing import Mode
from niteru.settings import Settings
from niteru.store import ProductPoint, ProductStore, open_store
from tests.fakes import fake_embedders
from tests.store_fixtures import write_catalog

pytestmark = pytest.mark.catalog
PER_CATEGORY = {"fashion": 24, "cosmetics": 12, "food": 12}


@dataclass
class Built:
    settings: Settings
    store: ProductStore
    products: list[Product]


@pytest.fixture(scope="module")
def built(catalog_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    from niteru.catalog import read_catalog

    rows = read_catalog(catalog_dir)
    chosen = []
    for category, n in PER_CATEGORY.items():
        group = [r for r in rows if r.category == category]
        chosen += [group[i * len(group) // n] for i in range(n)]
    folder = write_catalog(tmp_path_factory.mktemp("catalog"), chosen, catalog_dir)
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), catalog_dir=folder, store_batch_size=16)
    embedders = fake_embedders(settings)
    with open_store(settings) as store:
        report = ingest_catalog(folder, settings, store=store, embedders=embedders, train_category=False)
        assert report.written == len(chosen)
        products = [p.product for batch in store.scroll(with_vectors=False) for p in batch]
        yield Built(settings, store, products)


def test_colours_are_whole_english_words_or_japanese_words_mapped_to_one_name() -> None:
    assert colours("Nike Men Navy Blue T-shirt") == {"navy", "blue"}
    assert colours("Puma Grey and GRAY socks") == {"grey"}
    assert colours("ユニクロ グレー ニット 黒") == {"grey", "black"}
    assert colours("Bluetooth Speaker") == frozenset()  # "blue" inside a word is no colour
    assert colours("Golden Delicious") == {"gold"}


def test_the_brand_is_the_shop_id_only_when_the_title_names_it() -> None:
    assert brand_of("Nike", "Nike Men Running Shoes") == "nike"
    assert brand_of("United", "United Colors Of Benetton Men Shirt") == "united"
    assert brand_of("unknown", "Rockmantra Mug") is None
    assert brand_of("grocery-store", "Golden Delicious") is None


def test_a_variant_title_drops_the_brand_shuffles_the_words_and_changes_the_shop() -> None:
    fields = ProductFields(shop_id="Nike", title="Nike Men Navy Blue Running Shoes", category="fashion")
    variant = variant_fields("myn-1", fields, seed=0)
    assert variant == variant_fields("myn-1", fields, seed=0)  # deterministic
    assert Counter(variant.title.split()) == Counter(["Men", "Navy", "Blue", "Running", "Shoes"])
    assert variant.title != "Men Navy Blue Running Shoes"
    assert variant.shop_id != "Nike" and variant.category == "fashion"
    only_brand = ProductFields(shop_id="Nike", title="Nike", category="fashion")
    assert variant_fields("myn-2", only_brand, seed=0).title == "Nike"


def test_a_variant_photo_is_a_deterministic_reshoot_of_the_original() -> None:
    base = Image.new("RGB", (120, 160), (250, 250, 250))
    base.paste(Image.new("RGB", (60, 80), (200, 20, 20)), (30, 40))
    out = io.BytesIO()
    base.save(out, format="PNG")
    original = out.getvalue()
    one = variant_image("p", original, seed=0)
    assert one == variant_image("p", original, seed=0)
    assert one != variant_image("p", original, seed=1) and one != variant_image("q", original, seed=0)
    with Image.open(io.BytesIO(one)) as shot:
        w, h = shot.size
        assert 0.79 * 120 <= w <= 0.96 * 120 and 0.79 * 160 <= h <= 0.96 * 160
        pixels = np.asarray(shot.convert("RGB"), dtype=np.float32)
    assert pixels[..., 0].max() > 150 and pixels[..., 1].min() < 100  # the red block is still there


def test_the_sample_is_fixed_and_spans_every_category(built: Built) -> None:
    sample = fixed_sample(built.products, 20, seed=3)
    assert [p.product_id for p in sample] == [p.product_id for p in fixed_sample(reversed(built.products), 20, 3)]
    counts = Counter(p.category for p in sample)
    assert set(counts) == set(PER_CATEGORY) and min(counts.values()) >= MIN_PER_CATEGORY
    assert [p.product_id for p in fixed_sample(built.products, 20, seed=4)] != [p.product_id for p in sample]


def test_an_unchanged_relisting_finds_its_original_first_and_a_variant_is_found_by_its_words(built: Built) -> None:
    settings, store = built.settings, built.store
    embedders = fake_embedders(settings)
    sample = fixed_sample(built.products, 30, seed=0)
    same = [Variant(p, ProductFields.taken_from(p), read_image_path(p.image, settings)) for p in sample]
    outcomes = evaluate(store, settings, same, embed_variants(same, embedders))
    assert len(outcomes) == len(sample) and all(o.variant_rank == 1 for o in outcomes)

    variants = make_variants(sample, lambda ref: read_image_path(ref, settings), seed=0)
    assert [v.original.product_id for v in variants] == [p.product_id for p in sample]
    # The fake text vector is a bag of words: a shuffled title without its brand stays close to the original.
    by_text = summarise(evaluate(store, settings, variants, embed_variants(variants, embedders), Mode.text))
    assert by_text["all"].variant_r10 is not None and by_text["all"].variant_r10 >= 0.8
    fashion = by_text["fashion"]
    assert fashion.colour is not None and 0.0 <= fashion.colour <= 1.0 and fashion.brand is not None


def shuffled_copy(store: ProductStore) -> ProductStore:
    """A second collection with the same products, each with another product's vectors."""
    points = [p for batch in store.scroll(with_vectors=True) for p in batch]
    version = store.create_version({n: len(v) for n, v in points[0].vectors.items()})
    copy = store.pinned(version)
    order = np.random.default_rng(0).permutation(len(points))
    copy.upsert([ProductPoint(p.product, points[j].vectors) for p, j in zip(points, order, strict=True)])
    return copy


def test_the_gate_refuses_a_worse_collection_passes_an_equal_one_and_force_overrides(built: Built) -> None:
    settings = built.settings.model_copy(update={"rebuild_gate_sample": 30})
    fakes = fake_embedders(settings)
    worse = shuffled_copy(built.store)
    try:
        refused = gate(built.store, worse, fakes.text, settings, image=fakes.image, live_text=fakes.text)
        assert not refused.swap and refused.report["decision"] == "refuse"
        assert {"p10", "variant_r1"} <= set(refused.report["falls"])
        assert refused.report["sample"] >= 30 and refused.report["new"]["collection"] == worse.collection
        forced = gate(built.store, worse, fakes.text, settings, force=True, image=fakes.image, live_text=fakes.text)
        assert forced.swap and forced.report["decision"] == "forced" and forced.report["falls"]
    finally:
        built.store.drop(worse.collection)
    same = built.store.pinned(built.store.current_version())
    equal = gate(built.store, same, fakes.text, settings, image=fakes.image, live_text=fakes.text)
    assert equal.swap and equal.report["decision"] == "swap" and equal.report["falls"] == {}
    assert equal.report["live"]["measures"] == equal.report["new"]["measures"]
    off = settings.model_copy(update={"rebuild_gate_sample": 0})
    assert gate(built.store, same, fakes.text, off).report == {}  # no gate: not even the models are loaded

    path = save_report(settings, refused.report, "live")
    kept = json.loads(path.read_text())
    assert kept["serving"] == "live" and kept["decision"] == "refuse"
    figures = serving_figures(settings)
    assert figures["all"]["p10"] == pytest.approx(refused.report["live"]["measures"]["all"]["p10"])
    assert set(figures) == {"all", *PER_CATEGORY}
    printed = format_report(kept)
    assert printed.startswith("gate: refuse") and "fell" in printed and str(path) in printed
    path.write_text("{not json")
    assert serving_figures(settings) == {}
