"""Remove the text and joint models no collection needs any more, at the end of every rebuild.

Each rebuild trains a text model (about 220 MB on catalog-dev: the fastText file and the n-gram rows) and
a joint model (``models/joint/<text version>``). Before this, none was ever removed: a daily rebuild, swapped
or refused by the gate, left one more on disk each day. A model is kept when:

- it is ``CURRENT`` (what a process starting now loads);
- ``collections.json`` records it for a collection the store still has (the live one, and the previous one
  kept for ``niteru rollback``);
- it was written after this rebuild started and is not the rebuild's own: another process made it
  meanwhile (an ingest training the first model of an empty store), and it is not ours to judge.

The rebuild's own staged model goes when its collection went (refused, or the rebuild failed).
``collections.json`` forgets the collections the store no longer has.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from embedding.text.artifact import CURRENT, resolve
from niteru.model_config import joint_config, text_model_dir
from niteru.model_sync import forget_text_models
from niteru.settings import Settings

log = logging.getLogger(__name__)


def prune_models(
    settings: Settings, collections: Iterable[str], started: float, staged: str | None = None
) -> list[str]:
    """Remove the model folders nothing needs (see the module docstring); returns what was removed as
    ``text/<version>`` and ``joint/<version>``. ``collections``: the store's collections now; ``started``:
    when the rebuild started (``time.time()``); ``staged``: the rebuild's own text model, when its collection
    was not swapped in."""
    text_dir = text_model_dir(settings)
    keep = set(forget_text_models(settings, set(collections)).values())
    if (text_dir / CURRENT).is_file():
        keep.add(resolve(text_dir).name)
    removed: list[str] = []
    for kind, folder in (("text", text_dir), ("joint", joint_config(settings).model_dir)):
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            if _removable(entry, keep, started, staged):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(f"{kind}/{entry.name}")
    if removed:
        log.info("models no collection needs, removed: %s", ", ".join(removed))
    return removed


def _removable(entry: Path, keep: set[str], started: float, staged: str | None) -> bool:
    # Only finished model folders: an artifact is written under a dot-named temporary folder and renamed.
    if not entry.is_dir() or entry.name.startswith(".") or entry.name in keep:
        return False
    return entry.name == staged or entry.stat().st_mtime < started
