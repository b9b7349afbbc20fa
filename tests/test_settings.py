"""Settings: renamed settings keep their old names working, with a deprecation warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from niteru.settings import Settings


def test_old_environment_names_still_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NITERU_QDRANT_PATH", str(tmp_path / "old"))
    monkeypatch.setenv("NITERU_QDRANT_ALIAS", "legacy")
    with pytest.warns(DeprecationWarning, match="store_dir"):
        settings = Settings(data_dir=tmp_path)
    assert settings.store_path == tmp_path / "old"
    assert settings.store_alias == "legacy"


def test_new_names_win_over_old_ones(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NITERU_QDRANT_ALIAS", "legacy")
    monkeypatch.setenv("NITERU_STORE_ALIAS", "products-v2")
    assert Settings(data_dir=tmp_path).store_alias == "products-v2"


def test_old_keyword_still_works(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="store_alias"):
        assert Settings(data_dir=tmp_path, qdrant_alias="x").store_alias == "x"


def test_default_store_folder_follows_the_engine(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).store_path == tmp_path / "edge"
    assert Settings(data_dir=tmp_path, store_engine="qdrant").store_path == tmp_path / "qdrant"
    assert Settings(data_dir=tmp_path, store_dir=tmp_path / "s").store_path == tmp_path / "s"


def test_the_image_threads_keep_their_tensorflow_name_for_now(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NITERU_TF_INTRA_OP_THREADS", "1")
    with pytest.warns(DeprecationWarning, match="image_threads"):
        assert Settings(data_dir=tmp_path).image_threads == 1
