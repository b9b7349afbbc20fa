"""A larger catalog for the latency benchmarks: catalog-dev plus re-listed copies of its products, to ``--size``.

Issue 16 measures the query path at 100k products; catalog-dev has 13,367. The copies are what a
marketplace of that size holds more of: the same products listed again by other shops, each with a re-shot
photo (``niteru.lookalike.variant_image``: crop, flip, small rotation, brightness) and a re-written title
(``variant_fields``: brand dropped, words shuffled, another shop id). Copy ``n`` of a product has id
``<id>-r<n>`` and seed ``n``, so two runs write the same catalog. Category, subcategory, description and
price are kept.

The output is a catalog folder like catalog-dev (``products.csv`` + ``images/``) outside the repository;
``niteru ingest <out>`` then stores it through the one write path, and ``niteru rebuild`` fits it:

    .venv/bin/python bench/grow_catalog.py --size 100000 --out /tmp/catalog-100k
    NITERU_DATA_DIR=/tmp/data-100k .venv/bin/niteru ingest /tmp/catalog-100k
    NITERU_DATA_DIR=/tmp/data-100k NITERU_CATALOG_DIR=/tmp/catalog-100k .venv/bin/niteru rebuild
    .venv/bin/python bench/api_latency.py --data-dir /tmp/data-100k --skip-ingest --limit 0
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from niteru.catalog import COLUMNS, CatalogRow, read_catalog  # noqa: E402
from niteru.lookalike import variant_fields, variant_image  # noqa: E402
from niteru.products import ProductFields  # noqa: E402


def _record(row: CatalogRow) -> list[str]:
    return [getattr(row, c) for c in COLUMNS]


def _copy(job: tuple[CatalogRow, int, str, str]) -> list[str] | None:
    """Copy ``n`` of ``row``: its image written under ``out``; None when the source photo cannot be read."""
    row, n, source, out = job
    product_id = f"{row.product_id}-r{n}"
    try:
        photo = variant_image(product_id, (Path(source) / row.image).read_bytes(), n)
        fields = ProductFields(shop_id=row.shop_id, title=row.title)
    except (OSError, ValueError):  # an unreadable photo or an empty title: catalog-dev's own bad rows
        return None
    listed = variant_fields(product_id, fields, n)
    image = f"images/{product_id}.jpg"
    (Path(out) / image).write_bytes(photo)
    return _record(replace(row, product_id=product_id, shop_id=listed.shop_id, title=listed.title, image=image))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=REPO.parent / "shared" / "data" / "catalog-dev")
    parser.add_argument("--out", type=Path, required=True, help="the new catalog folder (outside the repo)")
    parser.add_argument("--size", type=int, default=100_000, help="products in all, originals included")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = read_catalog(args.catalog)
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for row in tqdm(rows, desc="originals", unit="product"):
        shutil.copyfile(args.catalog / row.image, args.out / row.image)
        records.append(_record(row))
    # Copy 1 of every product, then copy 2 of every product...: every product gains copies evenly.
    wanted = max(0, args.size - len(rows))
    jobs = [(rows[i % len(rows)], 1 + i // len(rows), str(args.catalog), str(args.out)) for i in range(wanted)]
    with ProcessPoolExecutor(args.workers) as pool:
        for record in tqdm(pool.map(_copy, jobs, chunksize=256), total=len(jobs), desc="copies", unit="product"):
            if record is not None:
                records.append(record)
    with (args.out / "products.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(records)
    print(f"{len(records)} products in {args.out}")


if __name__ == "__main__":
    main()
