"""``niteru ingest CATALOG_DIR``: a catalog folder (products.csv + images/) into the store.

Batches of ``store_batch_size`` rows: check the fields, read the image bytes, skip products whose content
hash (fields + image bytes + model versions) is already stored, embed images and texts, upsert. The write
of batch i runs in a thread while batch i+1 is embedded. A bad row (empty title, missing or corrupt image,
duplicate id...) is recorded with a reason in the summary and in a JSON-lines error file; it never stops
the run. Resumable: a second run over the same catalog embeds nothing that is stored unchanged.
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

from pydantic import ValidationError
from tqdm import tqdm

from niteru.catalog import CatalogRow, read_catalog, stratified_sample
from niteru.categorize import CategoryTrainingError, category_dir, train_from_store
from niteru.embedders import Embedders, ItemFailure, ProductInput, embed_products, input_hash, load_embedders
from niteru.products import ProductFields, is_valid_product_id
from niteru.settings import Settings
from niteru.store import ProductStore, UpsertOutcome, open_store

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


def row_fields(row: CatalogRow) -> ProductFields:
    """The shop's fields of a catalog row; raises ``ValueError`` with a reason code as its first arg."""
    try:
        price = float(row.price) if row.price.strip() else None
    except ValueError:
        raise ValueError("invalid_price", f"price {row.price!r} is not a number") from None
    try:
        return ProductFields(
            shop_id=row.shop_id,
            title=row.title,
            description=row.description,
            category=row.category,
            subcategory=row.subcategory,
            price=price,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "fields"
        kind = "empty" if "empty" in first["msg"] or first["type"] == "string_too_short" else "invalid"
        raise ValueError(f"{kind}_{name}", f"{name}: {first['msg']}") from None


def _read_row(row: CatalogRow, root: Path, embedders: Embedders) -> ProductInput:
    """Fields and image bytes of a row; raises ``ValueError(reason, message)``."""
    from embedding.image import ImageError
    from embedding.image.preprocess import read_image_bytes

    if not is_valid_product_id(row.product_id):
        raise ValueError("invalid_product_id", f"product id {row.product_id!r} is empty or has control characters")
    fields = row_fields(row)
    if not row.image.strip():
        raise ValueError("missing_image", "the image column is empty")
    path = row.image_path(root)
    try:
        data = read_image_bytes(path, embedders.image.config.max_bytes)
        version = path.stat().st_mtime_ns // 1000  # µs: a replaced file is a newer image
    except ImageError as exc:
        raise ValueError(exc.reason, exc.message) from None
    return ProductInput(row.product_id, fields, data, row.image, version)


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

    With ``train_category`` and no category classifier yet, one is trained on the store afterwards."""
    rows = read_catalog(catalog_dir)
    if limit is not None:
        rows = stratified_sample(rows, limit)
    if embedders is None:
        embedders = load_embedders(settings, train_texts=[r.text for r in rows if r.title.strip()])
    own_store = store is None
    store = store or open_store(settings)
    try:
        store.ensure_collection(embedders.dims)
        report = _ingest_rows(rows, catalog_dir, settings, store, embedders, errors_path)
        if report.written:  # a bulk load: build the vector index now (Edge; a no-op for qdrant-client)
            store.build_index(wait=True)
        if train_category and not (category_dir(settings) / "current.json").is_file():
            log.info("no category classifier yet: training one on the store")
            try:
                train_from_store(store, settings)
            except CategoryTrainingError as exc:  # a tiny catalog: the service runs without estimates
                log.warning("category classifier not trained: %s", exc)
        return report
    finally:
        if own_store:
            store.close()


def _ingest_rows(
    rows: Sequence[CatalogRow],
    root: Path,
    settings: Settings,
    store: ProductStore,
    embedders: Embedders,
    errors_path: Path | None,
) -> IngestReport:
    started = time.perf_counter()
    report = IngestReport(rows=len(rows))
    errors: list[RowError] = []
    seen: set[str] = set()
    pending: Future[UpsertOutcome] | None = None

    def collect(outcome: UpsertOutcome) -> None:
        report.written += len(outcome.written)
        report.stale += len(outcome.stale)

    step = settings.store_batch_size
    with (
        ThreadPoolExecutor(1, thread_name_prefix="ingest-write") as writer,
        tqdm(total=len(rows), desc="ingest", unit="product") as bar,
    ):
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            inputs: list[ProductInput] = []
            lines: dict[str, int] = {}
            for row in chunk:
                if row.product_id in seen:
                    errors.append(RowError(row.product_id, row.line, "duplicate_product_id", "seen earlier"))
                    continue
                seen.add(row.product_id)
                try:
                    inputs.append(_read_row(row, root, embedders))
                    lines[row.product_id] = row.line
                except ValueError as exc:
                    reason, message = exc.args if len(exc.args) == 2 else ("invalid_row", str(exc))
                    errors.append(RowError(row.product_id, row.line, str(reason), str(message)))
            stored = store.content_hashes([it.product_id for it in inputs])
            todo = [it for it in inputs if stored.get(it.product_id) != input_hash(it, embedders)]
            report.unchanged += len(inputs) - len(todo)
            results = embed_products(todo, embedders)
            points = [r for r in results if not isinstance(r, ItemFailure)]
            for r in results:
                if isinstance(r, ItemFailure):
                    errors.append(RowError(r.product_id, lines[r.product_id], r.reason, r.message))
            if pending is not None:
                collect(pending.result())
            pending = writer.submit(store.upsert, points) if points else None
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
