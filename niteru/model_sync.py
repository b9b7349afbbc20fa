"""Keep a long-running process's models in step with the collection the alias points at.

A rebuild (in a worker, or inline in the API) builds a new collection with a new text model and swaps the
alias. Every other process still holds the old text model in memory: it would embed query texts and new
products with it against text vectors made by the new one. So each collection's text model is recorded
(``models_dir/collections.json``, written *before* the swap) and a process checks now and then (and before
every write) which collection is live, loading that collection's text model and the current classifier
when it changed. The check also refreshes the store's own idea of the live collection.

At start-up a process loads the live collection's recorded text model, not blindly ``CURRENT``: a crash
between a rebuild's swap and its move of ``CURRENT`` (or a rollback) leaves the two apart, across restarts.
A text model that fails to load is not taken as seen: the next check tries again, and writes are refused
meanwhile (``model_unavailable``, transient) rather than embedded with a model the collection left.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from embedding.text.artifact import replace_durably
from niteru.refusals import Refusal
from niteru.route_table import RouteTable, load_route_table
from niteru.settings import Settings
from niteru.store.records import StoreUnavailableError

if TYPE_CHECKING:
    from embedding.category import CategoryModel
    from embedding.joint import JointEmbedder
    from embedding.text import TextEmbedder
    from niteru.store import ProductStore

log = logging.getLogger(__name__)


def _records(settings: Settings) -> Path:
    return settings.models_dir / "collections.json"


def recorded_text_models(settings: Settings) -> dict[str, str]:
    """Which text model each collection was built with (collection -> text model version)."""
    path = _records(settings)
    known: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    return known


def record_text_model(settings: Settings, collection: str, text_version: str) -> None:
    """Written before a swap, so a process that sees the new collection also finds its text model."""
    path = _records(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    known = recorded_text_models(settings)
    known[collection] = text_version
    replace_durably(path, json.dumps(known, indent=1))  # durable before the alias moves


def forget_text_models(settings: Settings, collections: set[str]) -> dict[str, str]:
    """Keep only the records of ``collections`` (the others were dropped); returns the records kept."""
    known = recorded_text_models(settings)
    kept = {c: v for c, v in known.items() if c in collections}
    if kept != known:
        replace_durably(_records(settings), json.dumps(kept, indent=1))
    return kept


@dataclass
class Reloaded:
    collection: str
    text: TextEmbedder | None = None  # set when the text model changed
    category: CategoryModel | None = None  # set when the collection changed and a classifier exists
    routing: RouteTable | None = None  # the new collection's fitted routing table (None: it has none)
    # The joint model of the collection's text model (None: the collection has no joint vector). Always
    # read again: a rebuild may retrain it for an unchanged text model.
    joint: JointEmbedder | None = None


class ModelSync:
    """Tells a process when the live collection changed and loads what belongs to the new one."""

    def __init__(self, settings: Settings, collection: str | None = None) -> None:
        self.settings = settings
        self.collection = collection
        self._checked = time.monotonic()
        # Reentrant: a caller holds it around ``check`` and its swap of the models, so no request sees
        # half a swap, and ``check`` takes it again.
        self.lock = threading.RLock()

    def due(self) -> bool:
        return time.monotonic() - self._checked >= self.settings.models_refresh_seconds

    def check(self, store: ProductStore, text_version: str, force: bool = False) -> Reloaded | None:
        """``None`` when nothing changed (or the check is not due); else what to swap in."""
        if not force and not self.due():
            return None
        with self.lock:  # one reload at a time; a second caller finds the collection already seen
            self._checked = time.monotonic()
            live = store.current_version()
            if live == self.collection:
                return None
            reloaded = Reloaded(live)
            wanted = recorded_text_models(self.settings).get(live)
            if wanted is not None and wanted != text_version:
                reloaded.text = load_text(self.settings, wanted)  # raises: the collection stays unseen
            from niteru.joint import load_joint

            reloaded.joint = load_joint(self.settings, wanted or text_version)
            if self.collection is not None:
                reloaded.category = self._load_category()
            reloaded.routing = load_route_table(self.settings, live)
            log.info("live collection %s -> %s; text model %s", self.collection, live, wanted or text_version)
            self.collection = live
            return reloaded

    def _load_category(self) -> CategoryModel | None:
        from embedding.category import CategoryModelMissingError
        from niteru.categorize import load_current

        try:
            return load_current(self.settings)
        except CategoryModelMissingError:
            return None


def load_text(settings: Settings, version: str) -> TextEmbedder:
    """Text model ``version``; a ``model_unavailable`` refusal (transient) when it cannot load."""
    from embedding.text import TextEmbedder, TextError
    from niteru.model_config import text_config

    config = text_config(settings)
    try:
        return TextEmbedder(config, config.model_dir / version).load()
    except TextError as exc:
        log.error("text model %s of the live collection cannot load (tried again later): %s", version, exc)
        raise Refusal(
            "model_unavailable", f"the live collection's text model {version} cannot load: {exc}", transient=True
        ) from exc


def live_text_model(settings: Settings, store: ProductStore, loaded: TextEmbedder) -> TextEmbedder:
    """At start-up: the text model the live collection was built with, when it is recorded and is not
    ``loaded`` (``CURRENT``'s); ``loaded`` when there is no collection yet or no record of it."""
    try:
        live = store.current_version()
    except StoreUnavailableError:
        return loaded
    wanted = recorded_text_models(settings).get(live)
    if wanted is None or wanted == loaded.version:
        return loaded
    log.warning(
        "text model %s is current but the live collection %s was built with %s: loading that",
        loaded.version,
        live,
        wanted,
    )
    return load_text(settings, wanted)
