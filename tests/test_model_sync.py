"""Which text model a process uses: the live collection's recorded one at start-up (even when ``CURRENT``
names another, as a crash between a rebuild's swap and its ``CURRENT`` move leaves it), a failed load tried
again on the next check, and the models swapped as one reference. Real text models, trained small; the
image model is a fake (it is not under test)."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from api.app import load_services
from embedding.text import TextEmbedder, train_text_model
from embedding.text.artifact import set_current
from niteru.catalog import read_catalog
from niteru.embedders import Embedders
from niteru.model_config import text_config
from niteru.model_sync import ModelSync, record_text_model
from niteru.refusals import Refusal
from niteru.settings import Settings
from niteru.store import open_store
from tests.fakes import IMAGE_DIM, FakeImageEmbedder

pytestmark = [pytest.mark.catalog, pytest.mark.slow]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, catalog_dir: Path) -> tuple[Path, Path]:
    """Two text models trained on different texts, in one models folder; ``CURRENT`` names the first."""
    rows = list(itertools.islice(read_catalog(catalog_dir), 120))
    settings = Settings(data_dir=tmp_path_factory.mktemp("models"), text_threads=1)
    config = text_config(settings)
    first = train_text_model([f"{r.title} {r.description}" for r in rows[:60]], config)
    second = train_text_model([f"{r.title} {r.description}" for r in rows[60:]], config, make_current=False)
    return first, second


def data_dir(tmp_path: Path, models: tuple[Path, Path]) -> Settings:
    settings = Settings(data_dir=tmp_path, store_engine="qdrant", text_threads=1)
    shutil.copytree(models[0].parent, settings.models_dir / "text")
    set_current(settings.models_dir / "text", models[0].name)
    return settings


def test_start_up_loads_the_live_collections_text_model(tmp_path: Path, models: tuple[Path, Path]) -> None:
    settings = data_dir(tmp_path, models)
    current = TextEmbedder(text_config(settings)).load()
    assert current.version == models[0].name
    live_model = TextEmbedder(text_config(settings), settings.models_dir / "text" / models[1].name).load()
    with open_store(settings) as store:  # a rebuild swapped to a collection of the second model, then crashed
        store.ensure_collection({"image": IMAGE_DIM, "text": live_model.dim})
        record_text_model(settings, store.current_version(), models[1].name)
    services = load_services(settings, Embedders(FakeImageEmbedder(settings), current))
    try:
        assert "store" not in services.problems and "text" not in services.problems
        assert services.text is not None and services.text.version == models[1].name
    finally:
        assert services.store is not None
        services.store.close()


def test_a_text_model_that_fails_to_load_is_tried_again(tmp_path: Path, models: tuple[Path, Path]) -> None:
    settings = data_dir(tmp_path, models)
    late = settings.models_dir / "text" / "scdv-arriving-late"
    with open_store(settings) as store:
        store.ensure_collection({"image": IMAGE_DIM, "text": 8})
        sync = ModelSync(settings, "an-older-collection")
        record_text_model(settings, store.current_version(), late.name)
        with pytest.raises(Refusal) as refused:
            sync.check(store, models[0].name, force=True)
        assert refused.value.reason == "model_unavailable" and refused.value.transient
        shutil.copytree(settings.models_dir / "text" / models[1].name, late)
        reloaded = sync.check(store, models[0].name, force=True)
        assert reloaded is not None and reloaded.text is not None
        assert sync.check(store, reloaded.text.version, force=True) is None


def test_the_models_are_swapped_as_one_reference(tmp_path: Path, models: tuple[Path, Path]) -> None:
    settings = data_dir(tmp_path, models)
    current = TextEmbedder(text_config(settings)).load()
    with open_store(settings) as store:
        store.ensure_collection({"image": IMAGE_DIM, "text": current.dim})
    services = load_services(settings, Embedders(FakeImageEmbedder(settings), current))
    assert services.store is not None and services.sync is not None
    try:
        before = services.models
        second = TextEmbedder(text_config(settings), settings.models_dir / "text" / models[1].name).load()
        new = services.store.create_version({"image": IMAGE_DIM, "text": second.dim})
        record_text_model(settings, new, models[1].name)
        services.store.switch(new)
        services.refresh_models(force=True)
        after = services.models
        assert after is not before and after.text is not None and after.text.version == models[1].name
        assert before.text is current and after.image is before.image  # a request's snapshot is never mixed
    finally:
        services.store.close()
