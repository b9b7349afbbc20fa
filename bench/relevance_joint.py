"""The joint vector on products its model has not seen (bench/relevance.py ``--joint-holdout``).

The joint model in the store was trained at rebuild on every stored product's label, the queries' included,
so its precision@10 in the main table is optimistic. Here a joint model is trained the way the rebuild
trains it (``niteru.joint.variants`` + ``embedding.joint.train``) but on the 80 % training split only, every
stored product gets its vector (numpy forward pass), and each held-out query searches them exactly (numpy,
leave-one-out), scored like the other configurations.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from embedding.joint.model import forward
from embedding.joint.train import train_joint
from embedding.text import TextEmbedder
from niteru.joint import label_of, variants
from niteru.model_config import joint_config, text_config
from niteru.products import Product
from niteru.settings import Settings
from niteru.store import ProductPoint

NAME = "joint only, model trained on the 80% (numpy search)"


def holdout_run(
    points: list[ProductPoint],
    train: list[ProductPoint],
    queries: list[ProductPoint],
    settings: Settings,
    sub_counts: Counter[str],
    score: Callable[[ProductPoint, list[Product], Counter[str]], dict[str, Any]],
    k: int,
) -> dict[str, Any]:
    text = TextEmbedder(text_config(settings)).load()  # the live text model: the stored text vectors are its
    image = np.stack([p.vectors["image"] for p in train])
    txt = np.stack([p.vectors["text"] for p in train])
    view_image, view_text, reshot = variants(train, image, txt, text, settings)
    started = time.perf_counter()
    arrays, _ = train_joint(
        image, txt, [label_of(p) for p in train], view_image, view_text, reshot, joint_config(settings)
    )
    train_s = time.perf_counter() - started
    every = forward(
        arrays, np.stack([p.vectors["image"] for p in points]), np.stack([p.vectors["text"] for p in points])
    )
    row = {p.product.product_id: i for i, p in enumerate(points)}
    per_query = []
    started = time.perf_counter()
    for q in queries:
        sims = every @ every[row[q.product.product_id]]
        sims[row[q.product.product_id]] = -np.inf
        top = np.argpartition(-sims, k)[:k]
        hits = [points[i].product for i in top[np.argsort(-sims[top])]]
        per_query.append(score(q, hits, sub_counts))
    elapsed = time.perf_counter() - started
    return {
        "config": NAME,
        "per_query": per_query,
        "ms_per_query": 1000 * elapsed / max(1, len(queries)),
        "train_s": train_s,
    }
