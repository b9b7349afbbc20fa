"""Reading a catalog folder: ``products.csv`` plus ``images/`` (the format of catalog-dev).

Columns: product_id, shop_id, title, description, category, subcategory, category_path, image, price.
Everything is read as text; ``image`` is a path relative to the folder.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from niteru.products import product_text

COLUMNS = (
    "product_id",
    "shop_id",
    "title",
    "description",
    "category",
    "subcategory",
    "category_path",
    "image",
    "price",
)


@dataclass(frozen=True)
class CatalogRow:
    product_id: str
    shop_id: str
    title: str
    description: str
    category: str
    subcategory: str
    category_path: str
    image: str
    price: str
    line: int  # 1-based record number in products.csv, for error reports

    def image_path(self, root: Path) -> Path:
        return root / self.image

    @property
    def text(self) -> str:
        return product_text(self.title, self.description)


class CatalogFormatError(ValueError):
    pass


def iter_catalog(root: Path) -> Iterator[CatalogRow]:
    """Rows of ``root/products.csv`` in file order; a missing column is a format error."""
    path = root / "products.csv"
    if not path.is_file():
        raise CatalogFormatError(f"{path} not found: a catalog folder holds products.csv and images/")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise CatalogFormatError(f"{path} lacks columns {sorted(missing)}")
        for n, record in enumerate(reader, start=1):
            yield CatalogRow(**{c: (record.get(c) or "") for c in COLUMNS}, line=n)


def read_catalog(root: Path, limit: int | None = None) -> list[CatalogRow]:
    rows: list[CatalogRow] = []
    for row in iter_catalog(root):
        if limit is not None and len(rows) >= limit:
            break
        rows.append(row)
    return rows


def stratified_sample(rows: list[CatalogRow], n: int) -> list[CatalogRow]:
    """Every k-th row of the file, so a small sample still spans all sources and categories."""
    if n >= len(rows):
        return rows
    step = len(rows) / n
    return [rows[int(i * step)] for i in range(n)]
