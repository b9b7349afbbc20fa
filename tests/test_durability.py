"""What must be on disk before a pointer names it: the text model before ``CURRENT``, the collections'
text models before an alias moves, an Edge index copy (with the writes replayed on it) before the state
file names it. Checked by recording which paths ``os.fsync`` was given, in order."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from embedding.text.artifact import CURRENT, set_current
from niteru.model_sync import record_text_model, recorded_text_models
from niteru.settings import Settings
from tests.test_store_edge_lifetime import indexed_store


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    paths: list[Path] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        paths.append(Path(f"/proc/self/fd/{fd}").readlink())
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


def first(synced: list[Path], folder: Path, prefix: str) -> int:
    """Where the first temporary file ``prefix``* of ``folder`` was fsynced (before its rename)."""
    return next(i for i, p in enumerate(synced) if p.parent == folder and p.name.startswith(prefix))


def test_current_is_durable_and_names_a_durable_model(tmp_path: Path, synced: list[Path]) -> None:
    model = tmp_path / "v2"
    model.mkdir()
    (model / "meta.json").write_text("{}")
    set_current(tmp_path, "v2")
    assert (tmp_path / CURRENT).read_text().strip() == "v2"
    pointer = first(synced, tmp_path, f".{CURRENT}-")
    assert synced.index(model / "meta.json") < pointer < synced.index(tmp_path, pointer)


def test_recorded_text_models_are_durable(tmp_path: Path, synced: list[Path]) -> None:
    settings = Settings(data_dir=tmp_path)
    record_text_model(settings, "products-1", "text-1")
    assert recorded_text_models(settings) == {"products-1": "text-1"}
    written = first(synced, settings.models_dir, ".collections.json-")
    assert synced.index(settings.models_dir, written) > written


def test_an_index_copy_is_durable_before_the_state_file_names_it(tmp_path: Path, synced: list[Path]) -> None:
    with indexed_store(tmp_path) as store:
        version = store.collection
        before = store.shards.state.dirs[version]
        assert store.build_index(wait=True)
        store.shards._builds[version].join()
        copy = store.settings.store_path / store.shards.state.dirs[version]
        assert copy.name != before
        state = synced.index(store.settings.store_path / ".state.json.tmp", synced.index(copy))
        files = [p for p in copy.rglob("*") if p.is_file()]
        assert files and all(f in synced[:state] for f in files)
        assert np.isfinite(store.count())
