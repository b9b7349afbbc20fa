"""The joint vector on products its model has not seen (bench/relevance.py ``--joint-holdout``).

The joint model in the store was trained at rebuild on every stored product's label, the queries' included,
so its precision@10 in the main table is optimistic. Here a joint model is trained the way the rebuild
trains it (``niteru.joint.variants`` + ``embedding.joint.train``) but on the 80 % training split only, every
stored product gets its vector (numpy forward pass), and each held-out query searches them exactly (numpy,
leave-one-out); its re-listed variant (the same one the other configurations query with) likewise. Scored
by ``niteru.evaluation.outcome``, like every other configuration.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from embedding.joint.model import forward
from embedding.joint.train import train_joint
from embedding.text import TextEmbedder
from niteru.evaluation import K, Variant, outcome
from niteru.joint import label_of, variants
from niteru.model_config import joint_config, text_config
from niteru.settings import Settings
from niteru.store import ProductPoint

NAME = "joint only, model trained on the 80% (numpy search)"


def holdout_run(
    points: list[ProductPoint],
    train: list[ProductPoint],
    relisted: list[Variant],
    embedded: dict[str, ProductPoint],
    settings: Settings,
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

    def nearest(vector: np.ndarray, leave_out: int | None) -> list[int]:
        sims = every @ vector
        if leave_out is not None:
            sims[leave_out] = -np.inf
        top = np.argpartition(-sims, K)[:K]
        return [int(i) for i in top[np.argsort(-sims[top])]]

    outcomes = []
    started = time.perf_counter()
    for v in relisted:
        q, shot = v.original, embedded.get(v.original.product_id)
        if shot is None or q.product_id not in row:
            continue
        hits = nearest(every[row[q.product_id]], row[q.product_id])
        variant = forward(arrays, shot.vectors["image"][None, :], shot.vectors["text"][None, :])[0]
        found = [points[i].product.product_id for i in nearest(variant, None)]
        outcomes.append(outcome(q, [points[i].product for i in hits], found, {"joint": 1.0}))
    elapsed = time.perf_counter() - started
    return {
        "config": NAME,
        "outcomes": outcomes,
        "ms_per_query": 1000 * elapsed / max(1, 2 * len(outcomes)),
        "train_s": train_s,
    }
