"""Pruning the models no collection needs (``niteru.model_prune``), on model folders laid out as a rebuild
leaves them; the rebuild's own calls are checked with the real models in ``test_rebuild_gate.py``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from niteru.model_prune import prune_models
from niteru.model_sync import recorded_text_models
from niteru.settings import Settings


def model(settings: Settings, kind: str, version: str, mtime: float) -> Path:
    folder = settings.models_dir / kind / version
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text("{}")
    os.utime(folder, (mtime, mtime))
    return folder


def test_only_what_a_collection_or_current_needs_stays(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    started = time.time()
    before, during = started - 100, started + 1
    for version in ("t-dropped", "t-previous", "t-live", "t-refused"):
        model(settings, "text", version, during if version == "t-refused" else before)
        model(settings, "joint", version, during if version == "t-refused" else before)
    model(settings, "text", "t-ingest-meanwhile", during)  # another process's, made during the rebuild
    tmp = model(settings, "text", ".tmp-t-half-written-x", before)
    (settings.models_dir / "text" / "CURRENT").write_text("t-live\n")
    records = {"c-dropped": "t-dropped", "c-previous": "t-previous", "c-live": "t-live"}
    (settings.models_dir / "collections.json").write_text(json.dumps(records))

    removed = prune_models(settings, ["c-previous", "c-live"], started, staged="t-refused")

    assert sorted(removed) == ["joint/t-dropped", "joint/t-refused", "text/t-dropped", "text/t-refused"]
    left = sorted(p.name for p in (settings.models_dir / "text").iterdir())
    assert left == [".tmp-t-half-written-x", "CURRENT", "t-ingest-meanwhile", "t-live", "t-previous"]
    assert tmp.is_dir()
    assert recorded_text_models(settings) == {"c-previous": "t-previous", "c-live": "t-live"}


def test_a_staged_model_that_is_also_live_is_kept(tmp_path: Path) -> None:
    """A retrain on the same texts gives the same version (a content hash): refusing it must not remove
    the live model it shares a folder with."""
    settings = Settings(data_dir=tmp_path)
    started = time.time()
    model(settings, "text", "t-same", started + 1)
    (settings.models_dir / "text" / "CURRENT").write_text("t-same\n")
    assert prune_models(settings, ["c-live"], started, staged="t-same") == []
    assert (settings.models_dir / "text" / "t-same").is_dir()


def test_an_empty_models_folder_is_no_error(tmp_path: Path) -> None:
    assert prune_models(Settings(data_dir=tmp_path), [], time.time()) == []
