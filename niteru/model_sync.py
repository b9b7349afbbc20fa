"""Keep a long-running process's models in step with the collection the alias points at.

A rebuild (in a worker, or inline in the API) builds a new collection with a new text model and swaps the
alias. Every other process still holds the old text model in memory: it would embed query texts and new
products with it against text vectors made by the new one. So each collection's text model is recorded
(``models_dir/collections.json``, written *before* the swap) and a process checks now and then (and before
every write) which collection is live, loading that collection's text model and the current classifier
when it changed. The check also refreshes the store's own idea of the live collection.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedding.text.artifact import replace_durably
from niteru.settings import Settings

if TYPE_CHECKING:
    from embedding.category import CategoryModel
    from embedding.text import TextEmbedder
    from niteru.store import ProductStore

log = logging.getLogger(__name__)


def recorded_text_models(settings: Settings) -> dict[str, str]:
    """Which text model each collection was built with (collection -> text model version)."""
    path = settings.models_dir / "collections.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    return known


def record_text_model(settings: Settings, collection: str, text_version: str) -> None:
    """Written before a swap, so a process that sees the new collection also finds its text model."""
    path = settings.models_dir / "collections.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    known = recorded_text_models(settings)
    known[collection] = text_version
    replace_durably(path, json.dumps(known, indent=1))  # durable before the alias moves


@dataclass
class Reloaded:
    collection: str
    text: TextEmbedder | None = None  # set when the text model changed
    category: CategoryModel | None = None  # set when the collection changed and a classifier exists


class ModelSync:
    """Tells a process when the live collection changed and loads what belongs to the new one."""

    def __init__(self, settings: Settings, collection: str | None = None) -> None:
        self.settings = settings
        self.collection = collection
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def due(self) -> bool:
        return time.monotonic() - self._checked >= self.settings.models_refresh_seconds

    def check(self, store: ProductStore, text_version: str, force: bool = False) -> Reloaded | None:
        """``None`` when nothing changed (or the check is not due); else what to swap in."""
        if not force and not self.due():
            return None
        with self._lock:  # one reload at a time; a second caller finds the collection already seen
            self._checked = time.monotonic()
            live = store.current_version()
            if live == self.collection:
                return None
            reloaded = Reloaded(live)
            wanted = recorded_text_models(self.settings).get(live)
            if wanted is not None and wanted != text_version:
                reloaded.text = self._load_text(wanted)
            if self.collection is not None:
                reloaded.category = self._load_category()
            log.info("live collection %s -> %s; text model %s", self.collection, live, wanted or text_version)
            self.collection = live
            return reloaded

    def _load_text(self, version: str) -> TextEmbedder | None:
        from embedding.text import TextEmbedder, TextError
        from niteru.model_config import text_config

        config = text_config(self.settings)
        try:
            return TextEmbedder(config, config.model_dir / version).load()
        except TextError as exc:
            log.error("text model %s of the live collection cannot load: %s", version, exc)
            return None

    def _load_category(self) -> CategoryModel | None:
        from embedding.category import CategoryModelMissingError
        from niteru.categorize import load_current

        try:
            return load_current(self.settings)
        except CategoryModelMissingError:
            return None
