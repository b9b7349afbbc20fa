"""What the task handlers run against: the models, the store and the category classifier, loaded once
per worker process (or lent by the API's services to the inline executor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from niteru.categorize import estimator_of
from niteru.embedders import Embedders, load_embedders
from niteru.joint import load_joint
from niteru.model_sync import ModelSync, live_text_model
from niteru.route_table import RouteTable, load_route_table
from niteru.settings import Settings
from niteru.store import ProductStore, open_store
from niteru.writes import ProductWriter

if TYPE_CHECKING:
    from embedding.category import CategoryModel


@dataclass
class JobContext:
    settings: Settings
    embedders: Embedders
    store: ProductStore
    category: CategoryModel | None = None
    category_problem: str = "not trained"  # why there is no classifier, for the refusal's message
    sync: ModelSync | None = None
    # The live collection's fitted routing table: no task queries similar products yet, but one that does
    # must route like the API (niteru.route_table).
    routing: RouteTable | None = None

    @classmethod
    def load(cls, settings: Settings) -> JobContext:
        from embedding.category import CategoryModelMissingError
        from niteru.categorize import load_current

        embedders = load_embedders(settings)
        store = open_store(settings)
        # The live collection's text model, which CURRENT may not name after a crash (niteru.model_sync).
        text = live_text_model(settings, store, embedders.text)
        joint = embedders.joint if text is embedders.text else load_joint(settings, text.version)
        embedders = Embedders(embedders.image, text, joint)
        store.ensure_collection(embedders.dims)
        live = store.current_version()
        ctx = cls(settings, embedders, store, sync=ModelSync(settings, live), routing=load_route_table(settings, live))
        try:
            ctx.category = load_current(settings)
        except CategoryModelMissingError as exc:
            ctx.category_problem = str(exc)
        return ctx

    def writer(self) -> ProductWriter:
        estimator = estimator_of(self.category)
        return ProductWriter(
            self.settings, self.store, self.embedders, estimator, estimator_problem=self.category_problem
        )

    def refresh(self) -> None:
        """Before a task: if a rebuild swapped the live collection, take its text model and classifier
        (every task writes, and a text vector from the old model in the new collection would be wrong
        until the next rebuild). A store that is down raises ``StoreUnavailableError``."""
        if self.sync is None:
            return
        with self.sync.lock:
            reloaded = self.sync.check(self.store, self.embedders.text.version, force=True)
            if reloaded is None:
                return
            self.embedders = Embedders(self.embedders.image, reloaded.text or self.embedders.text, reloaded.joint)
            if reloaded.category is not None:
                self.category = reloaded.category
            self.routing = reloaded.routing

    def close(self) -> None:
        self.store.close()
