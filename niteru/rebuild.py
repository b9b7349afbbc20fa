"""The daily rebuild: retrain the text model and the classifier on the live catalog, build a new versioned
collection, check it, and swap the alias to it atomically; ``rollback`` swaps back.

1. read every product from the live collection (payload, both vectors);
2. train fastText + SCDV on their texts (staged: ``CURRENT`` does not move yet) and the classifier; then,
   on the new text vectors, the joint model (``niteru.joint``, stored under the new text model's version);
3. create a new collection: image vectors copied, text and joint vectors recomputed, in batches with progress;
4. catch up with what changed meanwhile: products whose stored fields differ from the copy (or are new)
   are re-read from the live collection and re-embedded, products deleted meanwhile are deleted;
   repeated until a pass finds nothing, the last pass and the swap under the store's lock (in one
   process nothing can slip in between);
5. fit the routing table on the new collection and save it with it (``niteru.route_fit``);
6. check (smoke queries answer; the gate, ``niteru.gate``: the new collection, routed by its fitted table,
   measures no worse than the live one on a fixed sample, else it is dropped with its table and the live
   one serves on, untouched; under the store's lock, after the last catch-up, the same count as live),
   swap the alias, make the new text model and classifier current, keep the previous collection for
   ``rollback`` and drop older ones;
7. re-sync: other processes (workers on a Qdrant server) may still have written to the old collection
   during the last catch-up and the swap. What they wrote there is carried over, unless the product was
   written in the new collection since the swap (that write is later). A write landing in the old
   collection after this re-sync is made again by its writer, which reads the alias after every write
   (``ProductStore.upsert``/``delete``): the two together lose no acknowledged write.

Only one rebuild at a time: an exclusive lock file in the data folder (freed by the kernel when its process
dies) and, with a Qdrant server (several hosts may run workers), a Redis lock on the broker that expires
after ``rebuild_lock_timeout`` unless released. Queries go on meanwhile: they read the live collection
through the alias until the swap; other processes pick up the new collection's text model through
``niteru.model_sync`` (the collection's text model is recorded before the swap).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from embedding.category import CategoryModel, save_category_model
from embedding.joint import JointEmbedder
from embedding.text import TextEmbedder, train_text_model
from embedding.text.artifact import CURRENT, resolve, set_current
from niteru.categorize import CategoryTrainingError, category_dir, fit_from_store
from niteru.gate import gate, save_report
from niteru.joint import ImageModel, train_for_rebuild
from niteru.model_config import text_config
from niteru.model_prune import prune_models
from niteru.model_sync import record_text_model, recorded_text_models
from niteru.photos import prune_photos
from niteru.products import ProductFields, content_hash
from niteru.route_table import drop_route_table, save_route_table
from niteru.settings import Settings
from niteru.store import ProductPoint, ProductStore, SearchFilter

log = logging.getLogger(__name__)
CATCH_UP_PASSES = 5
SMOKE_QUERIES = 3


class RebuildError(RuntimeError):
    pass


@dataclass
class RebuildReport:
    previous: str
    current: str
    products: int
    caught_up: int
    text_model: str
    dropped: list[str]
    swapped: bool = True  # False: the gate refused the new collection (dropped), the live one serves on
    gate: dict[str, Any] = field(default_factory=dict)  # the gate's report (``niteru.gate``); empty: no gate
    routing: str | None = None  # the version of the routing table fitted on the new collection
    joint_model: str | None = None  # the joint model trained for the new collection (None: none)


@contextmanager
def rebuild_lock(settings: Settings) -> Iterator[None]:
    with _file_lock(settings):
        if settings.qdrant_url is None:
            yield  # the embedded store: one process, one host, the file lock is enough
        else:
            with _redis_lock(settings):
                yield


@contextmanager
def _redis_lock(settings: Settings) -> Iterator[None]:
    import redis

    client = redis.Redis.from_url(settings.celery_broker_url, socket_timeout=10)
    lock = client.lock(f"niteru:rebuild:{settings.store_alias}", timeout=settings.rebuild_lock_timeout)
    try:
        acquired = lock.acquire(blocking=False)
    except redis.RedisError as exc:
        raise RebuildError(f"cannot reach Redis for the rebuild lock: {exc}") from exc
    if not acquired:
        raise RebuildError("another rebuild is running (the Redis rebuild lock is held)")
    try:
        yield
    finally:
        try:
            lock.release()
        except redis.RedisError as exc:  # expired meanwhile (a rebuild longer than the timeout): say so
            log.warning("rebuild lock not released cleanly: %s", exc)
        client.close()


@contextmanager
def _file_lock(settings: Settings) -> Iterator[None]:
    path = settings.data_dir / "rebuild.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RebuildError("another rebuild is running (data/rebuild.lock is held)") from None
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Models:
    """The new collection's models: what a copied product's text (and joint) vectors are recomputed with."""

    text: TextEmbedder
    joint: JointEmbedder | None = None

    def points(self, points: list[ProductPoint], text_vectors: np.ndarray | None = None) -> list[ProductPoint]:
        text, joint = self.text, self.joint
        vectors = text.embed([p.product.text for p in points]) if text_vectors is None else text_vectors
        joint_version = None if joint is None else joint.version
        out = []
        for p, vector in zip(points, vectors, strict=True):
            fields = ProductFields.taken_from(p.product)
            old = p.product
            digest = content_hash(fields, old.image_sha256, old.image_model_version, text.version, joint_version)
            update = {"text_model_version": text.version, "joint_model_version": joint_version, "content_hash": digest}
            named = {"image": p.vectors["image"], "text": vector}
            if joint is not None:
                named["joint"] = joint.embed(named["image"], vector)[0]
            out.append(ProductPoint(p.product.model_copy(update=update), named))
        return out


def _signatures(store: ProductStore) -> dict[str, str]:
    """What identifies a product's state apart from the text model: every stored field but the two the
    rebuild itself rewrites. Compared, not timestamps: a write may carry an older ``updated_at``."""
    skip = {"text_model_version", "joint_model_version", "content_hash"}
    return {
        p.product.product_id: p.product.model_dump_json(exclude=skip)
        for batch in store.scroll(batch_size=1024, with_vectors=False)
        for p in batch
    }


def rebuild(
    store: ProductStore,
    settings: Settings,
    *,
    after_copy: Callable[[ProductStore], None] | None = None,
    force: bool = False,
) -> RebuildReport:
    """Rebuild behind the alias of ``store`` (which keeps serving meanwhile) and swap, when the gate lets it
    (``force``: whatever the gate finds).

    ``after_copy`` is called with the new collection once the copy is done, before the catch-up. It exists
    for the tests: a write made there is certainly missing from the copy, so a test can check that the
    catch-up carried it over (a sleep cannot pick that moment)."""
    with rebuild_lock(settings):
        started = time.time()
        previous = store.current_version()
        points = [p for batch in store.scroll(batch_size=512, with_vectors=True) for p in batch]
        if len(points) < 2:
            raise RebuildError(f"the live collection holds {len(points)} products: nothing to rebuild from")
        staged = train_text_model([p.product.text for p in points], text_config(settings), make_current=False)
        text = TextEmbedder(text_config(settings), staged).load()
        text_vectors = text.embed([p.product.text for p in points])  # once: the joint model trains on them
        image_model = _image_model(settings)  # loaded once, on first use: joint step, routing fit, gate
        models = Models(text, train_for_rebuild(points, text_vectors, text, settings, image_model))
        dims = {"image": len(points[0].vectors["image"]), "text": text.dim}
        if models.joint is not None:
            dims["joint"] = models.joint.dim
        new = store.create_version(dims)
        target = store.pinned(new)
        try:
            with tqdm(total=len(points), desc="rebuild", unit="product") as bar:
                for i in range(0, len(points), settings.store_batch_size):
                    chunk = points[i : i + settings.store_batch_size]
                    target.upsert(models.points(chunk, text_vectors[i : i + len(chunk)]))
                    bar.update(len(chunk))
            target.build_index(wait=True)  # Edge: HNSW off the request path (queries meanwhile); else a no-op
            if after_copy is not None:
                after_copy(target)
            caught = _catch_up(store, target, models, CATCH_UP_PASSES)
            _smoke(target)
            routing = _fit_routing(target, new, settings, models, image_model)
            image = image_model() if settings.rebuild_gate_sample else None  # no gate: no model to load
            verdict = gate(store, target, text, settings, force=force, image=image, new_joint=models.joint)
        except Exception:
            store.drop(new)
            drop_route_table(settings, new)
            _prune(store, settings, started, staged.name)
            raise
        if not verdict.swap:
            # Refused: the live collection never stopped serving nor taking writes; only the copy goes, and
            # its models with it.
            store.drop(new)
            drop_route_table(settings, new)
            _prune(store, settings, started, staged.name)
            save_report(settings, verdict.report, "live")
            log.warning("rebuild: %s refused by the gate (%s), %s serves on", new, verdict.report["falls"], previous)
            return RebuildReport(previous, previous, store.count(), caught, text.version, [new], False, verdict.report)
        classifier = _train_classifier(target, settings)
        record_text_model(settings, new, staged.name)  # before the swap: see niteru.model_sync
        with store.exclusive():  # the last catch-up and the swap: no write of this process between them
            try:
                caught += _catch_up(store, target, models, 1)
                # Counted here, not before: with writes going on, a count taken outside this section differs
                # from the live one by whatever was written in between, and would refuse a sound rebuild.
                caught += _same_count(store, target, models)
            except Exception:
                store.drop(new)
                _prune(store, settings, started, staged.name)
                raise
            at_switch = _signatures(target)  # only the rebuild has written to it so far
            store.switch(new)
        old_text = resolve(staged.parent).name if (staged.parent / CURRENT).is_file() else None
        set_current(staged.parent, staged.name)
        if classifier is not None:
            save_category_model(classifier, category_dir(settings))
        if old_text is not None and previous not in recorded_text_models(settings):
            record_text_model(settings, previous, old_text)
        # After the model files (quick, local): a re-sync that fails must not leave them behind the swap.
        caught += _resync(store.pinned(previous), target, at_switch, models)
        dropped = [v for v in store.versions() if v not in (previous, new)]
        for v in dropped:
            store.drop(v)
            drop_route_table(settings, v)
        _prune(store, settings, started)
        removed = prune_photos(settings, (p.product.image for p in points), started)
        if removed:
            log.info("rebuild: %d kept photos no product refers to removed", removed)
        if verdict.report:
            save_report(settings, verdict.report, "new")
        log.info("rebuild: %s -> %s (%d products, %d caught up)", previous, new, len(points), caught)
        report = RebuildReport(previous, new, target.count(), caught, text.version, dropped, True, verdict.report)
        report.routing = routing
        report.joint_model = None if models.joint is None else models.joint.version
        return report


def _prune(store: ProductStore, settings: Settings, started: float, staged: str | None = None) -> None:
    """The models no collection needs (``niteru.model_prune``); a failure to remove them is logged, never
    raised: the rebuild's outcome stands."""
    try:
        prune_models(settings, store.versions(), started, staged)
    except OSError as exc:
        log.warning("rebuild: models not pruned: %s", exc)


def _catch_up(live: ProductStore, target: ProductStore, models: Models, passes: int) -> int:
    """Make ``target`` hold what ``live`` holds now (new, changed and deleted products), pass after pass
    until a pass finds nothing to do. Returns how many products changed."""
    total = 0
    for _ in range(passes):
        now, built = _signatures(live), _signatures(target)
        changed = [pid for pid, sig in now.items() if built.get(pid) != sig]
        gone = [pid for pid in built if pid not in now]
        for i in range(0, len(changed), 256):
            points = [p for pid in changed[i : i + 256] if (p := live.get(pid, with_vectors=True)) is not None]
            if points:
                target.upsert(models.points(points))
        for pid in gone:
            target.delete(pid)
        total += len(changed) + len(gone)
        if not changed and not gone:
            break
    return total


def _resync(old: ProductStore, new: ProductStore, at_switch: dict[str, str], models: Models) -> int:
    """Carry over what other processes wrote to ``old`` after the last catch-up (see step 6): products
    whose state differs between the two collections, where ``new`` still holds what the rebuild put there
    (``at_switch``); a product written in ``new`` since the swap keeps that later write."""
    then, now = _signatures(old), _signatures(new)
    untouched = [pid for pid in {*then, *now} if now.get(pid) == at_switch.get(pid) and then.get(pid) != now.get(pid)]
    changed = [pid for pid in untouched if pid in then]
    for i in range(0, len(changed), 256):
        points = [p for pid in changed[i : i + 256] if (p := old.get(pid, with_vectors=True)) is not None]
        if points:
            new.upsert(models.points(points))
    for pid in untouched:
        if pid not in then:
            new.delete(pid)
    if untouched:
        log.info("rebuild: %d products written to the old collection during the swap carried over", len(untouched))
    return len(untouched)


def _same_count(live: ProductStore, target: ProductStore, models: Models) -> int:
    """The copy holds as many products as the live collection. In this process nothing writes meanwhile
    (``exclusive``); writers in other processes (a Qdrant server) may still add or delete one between the
    last pass and the count, so a difference gets one more pass before it counts as a broken copy."""
    caught = 0
    for attempt in range(2):
        if target.count() == live.count():
            return caught
        if attempt == 0:
            caught += _catch_up(live, target, models, 1)
    raise RebuildError(f"the new collection holds {target.count()} products, the live one {live.count()}")


def _smoke(target: ProductStore) -> None:
    """A few products of the copy find neighbours in it."""
    for batch in target.scroll(batch_size=SMOKE_QUERIES, with_vectors=True):
        for p in batch:
            only = SearchFilter(exclude_product_ids=(p.product.product_id,))
            if not target.search(p.vectors, {"image": 0.5, "text": 0.5}, 3, only):
                raise RebuildError(f"smoke query for {p.product.product_id} found nothing in the new collection")
        return


def _image_model(settings: Settings) -> ImageModel:
    from embedding.image import MobileNetEmbedder
    from niteru.model_config import image_config

    loaded: list[MobileNetEmbedder] = []

    def get() -> MobileNetEmbedder:
        if not loaded:
            loaded.append(MobileNetEmbedder(image_config(settings)).load())
        return loaded[0]

    return get


def _fit_routing(
    target: ProductStore, collection: str, settings: Settings, models: Models, image_model: ImageModel
) -> str | None:
    """Fit the routing table on the new collection and save it before the swap, like its text model: a
    process that sees the collection finds its table (``niteru.route_table``). None when off or when the
    collection has nothing to fit on (routing then uses the default table). The fit searches with re-listed
    variants embedded by the new collection's models, so it keeps what finds a product's re-listing."""
    if not settings.route_fit:
        return None
    from niteru.embedders import Embedders
    from niteru.evaluation import variant_embedder
    from niteru.route_fit import NothingToFitError, fit_routes

    variants = variant_embedder(settings, lambda: Embedders(image_model(), models.text, models.joint))
    try:
        table = fit_routes(target, settings, collection, variants)
    except NothingToFitError as exc:
        log.warning("rebuild: no routing table fitted: %s", exc)
        return None
    save_route_table(settings, table)
    return table.version


def _train_classifier(target: ProductStore, settings: Settings) -> CategoryModel | None:
    try:
        return fit_from_store(target, settings)
    except CategoryTrainingError as exc:
        log.warning("rebuild: category classifier not retrained, the old one stays: %s", exc)
        return None


def rollback(store: ProductStore, settings: Settings) -> str:
    """Point the alias back at the previous collection (and its text model, when recorded)."""
    with rebuild_lock(settings):
        current = store.current_version()
        older = [v for v in store.versions() if v < current]
        if not older:
            raise RebuildError(f"no collection older than {current} to roll back to")
        target = older[-1]
        store.switch(target)
        known = recorded_text_models(settings)
        if target in known and (settings.models_dir / "text" / known[target]).is_dir():
            set_current(settings.models_dir / "text", known[target])
        return target
