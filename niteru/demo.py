"""A first look at the image vectors: nearest neighbours of a few catalog products."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from niteru.catalog import read_catalog, stratified_sample
from niteru.settings import get_settings


def image_neighbours_demo(catalog: Path | None, limit: int, queries: int, k: int) -> None:
    from embedding.image import MobileNetEmbedder
    from niteru.model_config import image_config

    settings = get_settings()
    root = catalog or settings.catalog_dir
    rows = stratified_sample(read_catalog(root), limit)
    embedder = MobileNetEmbedder(image_config(settings)).load()
    vectors, kept = [], []
    paths = [r.image_path(root) for r in rows]
    with tqdm(total=len(rows), desc="embedding images", unit="img") as bar:
        for batch in embedder.iter_batches(paths):
            vectors.append(batch.vectors)
            kept.extend(batch.indices)
            for i, err in batch.errors.items():
                tqdm.write(f"skipped {rows[i].product_id}: {err}")
            bar.update(len(batch.indices) + len(batch.errors))
    matrix = np.concatenate(vectors)
    ids = [rows[i] for i in kept]
    for q in np.linspace(0, len(ids) - 1, num=min(queries, len(ids)), dtype=int):
        scores = matrix @ matrix[q]
        order = [int(j) for j in np.argsort(-scores) if j != q][:k]
        print(f"\n{ids[q].product_id}  [{ids[q].category}/{ids[q].subcategory}]  {ids[q].title[:70]}")
        for j in order:
            r = ids[j]
            print(f"  {scores[j]:.3f}  {r.product_id:<20} [{r.category}/{r.subcategory}]  {r.title[:60]}")
