"""``niteru ingest CATALOG_DIR``: a catalog folder (products.csv + images/) into the store.

This module reads the catalog, reports progress and writes the error file; each batch of
``store_batch_size`` rows goes through the one product write (``niteru.writes``: checks, unchanged skip,
embedding, category estimate, conditional upsert). The store write of batch i runs in a thread while
batch i+1 is embedded. A bad row (empty title, missing or corrupt image, duplicate id...) is recorded with
its refusal's reason in the summary and in a JSON-lines error file; it never stops the run. Resumable: a
second run over the same catalog embeds nothing that is stored unchanged.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from niteru.catalog import CatalogRow, read_catalog, stratified_sample
from niteru.categorize import (
    CategoryTrainingError,
    Estimator,
    category_dir,
    estimator_of,
    load_current,
    train_from_store,
)
from niteru.embedders import Embedders, load_embedders
from niteru.refusals import Refusal, from_embedding
from niteru.settings import Settings
from niteru.store import ProductStore, open_store
from niteru.write_inputs import ImageSource, ProductWrite, check_fields
from niteru.writes import ProductWriter, WriteOutcome

log = logging.getLogger(__name__)


@dataclass
class RowError:
    product_id: str
    line: int
    reason: str
    message: str


@dataclass
class IngestReport:
    rows: int = 0
    written: int = 0
    unchanged: int = 0
    stale: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors_path: str = ""
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def products_per_s(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.reasons.items())) or "none"
        return (
            f"{self.rows} rows: {self.written} written, {self.unchanged} unchanged, {self.stale} stale "
            f"(a newer image is stored), {self.failed} failed ({reasons}) in {self.seconds:.1f} s "
            f"({self.products_per_s:.1f} products/s); errors: {self.errors_path}"
        )


def row_write(row: CatalogRow, root: Path, settings: Settings) -> ProductWrite:
    """A catalog row as a product write; its image file is read here (a ``Refusal`` when it cannot be)."""
    from embedding.image import ImageError
    from embedding.image.preprocess import read_image_bytes

    fields = {
        "shop_id": row.shop_id,
        "title": row.title,
        "description": row.description,
        "category": row.category,
        "subcategory": row.subcategory,
        "price": row.price.strip() or None,  # the fields' own check refuses a price that is not a number
    }
    check_fields(row.product_id, fields)  # a bad row is refused before its image is read
    if not row.image.strip():
        raise Refusal("missing_image", "the image column is empty")
    path = row.image_path(root)
    try:
        data = read_image_bytes(path, settings.image_max_bytes)
        version = path.stat().st_mtime_ns // 1000  # µs: a replaced file is a newer image
    except ImageError as exc:
        raise from_embedding(exc) from None
    return ProductWrite(row.product_id, fields, ImageSource.given(data, row.image), version)


def ingest_catalog(
    catalog_dir: Path,
    settings: Settings,
    *,
    limit: int | None = None,
    store: ProductStore | None = None,
    embedders: Embedders | None = None,
    errors_path: Path | None = None,
    train_category: bool = True,
) -> IngestReport:
    """Ingest ``catalog_dir`` (``limit``: a stratified sample of that many rows, spanning all sources).

    With ``train_category`` and no category classifier yet, one is trained on the store afterwards; and
    without a routing table fitted on the collection, one is fitted (``niteru.route_fit``), so a store
    that was only ever ingested routes by its catalog too, not by the default table until a rebuild."""
    rows = read_catalog(catalog_dir)
    if limit is not None:
        rows = stratified_sample(rows, limit)
    if embedders is None:
        embedders = load_embedders(settings, train_texts=[r.text for r in rows if r.title.strip()])
    own_store = store is None
    store = store or open_store(settings)
    try:
        store.ensure_collection(embedders.dims)
        estimator, problem = _estimator(settings)
        writer = ProductWriter(settings, store, embedders, estimator, estimator_problem=problem)
        report = _ingest_rows(rows, catalog_dir, settings, writer, errors_path)
        if report.written:  # a bulk load: build the vector index now (Edge; a no-op for qdrant-client)
            store.build_index(wait=True)
        if train_category and not (category_dir(settings) / "current.json").is_file():
            log.info("no category classifier yet: training one on the store")
            try:
                train_from_store(store, settings)
            except CategoryTrainingError as exc:  # a tiny catalog: the service runs without estimates
                log.warning("category classifier not trained: %s", exc)
        if settings.route_fit:
            _fit_routing_if_missing(store, settings)
        return report
    finally:
        if own_store:
            store.close()


def _fit_routing_if_missing(store: ProductStore, settings: Settings) -> None:
    from niteru.route_fit import NothingToFitError, fit_routes
    from niteru.route_table import load_route_table, save_route_table

    collection = store.current_version()
    if load_route_table(settings, collection) is not None:
        return
    log.info("no routing table fitted on %s yet: fitting one", collection)
    try:
        save_route_table(settings, fit_routes(store, settings, collection))
    except NothingToFitError as exc:  # too few products with a category: the default table routes
        log.warning("routing table not fitted: %s", exc)


def _estimator(settings: Settings) -> tuple[Estimator | None, str]:
    """The current category classifier, to estimate the category of a row that has none."""
    from embedding.category import CategoryModelMissingError

    try:
        return estimator_of(load_current(settings)), ""
    except CategoryModelMissingError as exc:
        return None, str(exc)


def _ingest_rows(
    rows: Sequence[CatalogRow], root: Path, settings: Settings, writer: ProductWriter, errors_path: Path | None
) -> IngestReport:
    started = time.perf_counter()
    report = IngestReport(rows=len(rows))
    errors: list[RowError] = []
    seen: set[str] = set()
    pending: Future[list[WriteOutcome]] | None = None
    lines: dict[str, int] = {}

    def collect(outcomes: list[WriteOutcome]) -> None:
        for out in outcomes:
            if isinstance(out, Refusal):
                errors.append(RowError(out.product_id, lines[out.product_id], out.reason, out.message))
            elif out.status in ("created", "updated"):
                report.written += 1
            elif out.status == "stale":
                report.stale += 1
            else:
                report.unchanged += 1

    step = settings.store_batch_size
    with (
        ThreadPoolExecutor(1, thread_name_prefix="ingest-write") as store_writer,
        tqdm(total=len(rows), desc="ingest", unit="product") as bar,
    ):
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            writes: list[ProductWrite] = []
            for row in chunk:
                if row.product_id in seen:
                    errors.append(RowError(row.product_id, row.line, "duplicate_product_id", "seen earlier"))
                    continue
                seen.add(row.product_id)
                lines[row.product_id] = row.line
                try:
                    writes.append(row_write(row, root, settings))
                except Refusal as refusal:
                    errors.append(RowError(row.product_id, row.line, refusal.reason, refusal.message))
            # The store writes batch i in a thread while batch i+1 is embedded here.
            prepared = writer.prepare(writes)
            if pending is not None:
                collect(pending.result())
            pending = store_writer.submit(writer.commit, prepared)
            bar.update(len(chunk))
            bar.set_postfix(failed=len(errors), unchanged=report.unchanged, refresh=False)
        if pending is not None:
            collect(pending.result())

    report.failed = len(errors)
    report.reasons = dict(Counter(e.reason for e in errors))
    report.seconds = time.perf_counter() - started
    path = errors_path or settings.data_dir / "reports" / f"ingest-errors-{datetime.now(UTC):%Y%m%dT%H%M%S}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for e in errors:
            f.write(json.dumps(asdict(e), ensure_ascii=False) + "\n")
    report.errors_path = str(path)
    log.info("%s", report.summary())
    return report
