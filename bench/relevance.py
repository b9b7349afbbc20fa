"""Relevance of similar products by route, on the ingested dev catalog: does routing beat either modality?

1. Read every stored product (vectors and labels) from the store of ``NITERU_DATA_DIR`` (ingest it first:
   ``NITERU_DATA_DIR=data/full niteru ingest``).
2. Split the products 80/20 by category (seeded). The category classifier is trained on the 80% and its
   accuracy is measured on the 20%, per category and per feature set (image, text, both).
3. Queries: a fixed stratified sample (``--queries``, default 2,000) of the 20%, every category present.
   Each query runs through ``similar_products``, the function behind ``GET /v1/products/{id}/similar``,
   against the whole store (leave-one-out: the query itself is never a result) in each configuration:
   image only, text only, fixed 50/50 hybrid, routed by the shop's category, routed by the estimated
   category (the classifier trained on the 80%), and routed under each fusion rule.
4. precision@10 = share of the 10 results in the query's subcategory; nDCG@10 with binary relevance (same
   subcategory), the ideal being min(10, other products of that subcategory) relevant results first.
5. Look-alike: colour consistency = among the results in the query's subcategory, the share whose title
   shares a colour word (``COLOURS``) with the query's title (queries whose title names a colour), per
   category; a model that learns only the subcategory label loses it (issue 17's warning).

When the store holds joint vectors (after a rebuild trained the joint model), ``joint only`` is measured too.
That model was trained on every stored product's label, the queries' included: its precision@10 here is
optimistic; colour consistency is not a label it was trained on.

Writes bench/results/relevance.{json,md}. ``--queries 200`` for a quick look.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from relevance_report import ENOUGH_QUERIES, write_report  # noqa: E402  (bench/ is on sys.path when run as a script)

from embedding.category import train_category_model  # noqa: E402
from niteru.categorize import estimate  # noqa: E402
from niteru.fusion import Fusion  # noqa: E402
from niteru.products import Product  # noqa: E402
from niteru.routing import Mode  # noqa: E402
from niteru.settings import get_settings  # noqa: E402
from niteru.similar import SimilarOptions, similar_products  # noqa: E402
from niteru.store import ProductPoint, open_store  # noqa: E402

RESULTS = REPO / "bench" / "results"
K = 10
# Colour words of titles (catalog-dev's fashion titles name the colour); grey/gray and the like as one.
_BASIC = """black white blue red green yellow pink purple brown beige navy orange maroon olive silver gold cream
khaki teal turquoise magenta charcoal lavender peach mustard rust copper bronze violet burgundy coral mauve nude
tan grey"""
COLOURS = {**{c: c for c in _BASIC.split()}, "gray": "grey", "multicoloured": "multi", "multicolored": "multi"}


def colours(title: str) -> set[str]:
    return {COLOURS[w] for w in title.lower().replace("-", " ").replace("/", " ").split() if w in COLOURS}


@dataclass(frozen=True)
class Config:
    name: str
    mode: Mode
    fusion: Fusion | None = None
    estimate_category: bool = False


def configs(default: Fusion, joint: bool) -> list[Config]:
    others = [f for f in Fusion if f is not default]
    return [
        Config("image only", Mode.image),
        Config("text only", Mode.text),
        *([Config("joint only", Mode.joint)] if joint else []),
        Config(f"hybrid 50/50 ({default.value})", Mode.hybrid, default),
        Config(f"routed ({default.value})", Mode.auto, default),
        Config(f"routed, estimated category ({default.value})", Mode.auto, default, True),
        *[Config(f"routed ({f.value})", Mode.auto, f) for f in others],
    ]


def split(points: list[ProductPoint], seed: int) -> tuple[list[ProductPoint], list[ProductPoint]]:
    """80/20 per category, seeded (a category of one product stays in the training part)."""
    rng = np.random.default_rng(seed)
    by_cat: dict[str, list[ProductPoint]] = defaultdict(list)
    for p in sorted(points, key=lambda p: p.product.product_id):
        by_cat[p.product.category].append(p)
    train, test = [], []
    for cat in sorted(by_cat):
        group = by_cat[cat]
        order = rng.permutation(len(group))
        n_test = round(0.2 * len(group)) if len(group) >= 5 else 0
        test += [group[i] for i in order[:n_test]]
        train += [group[i] for i in order[n_test:]]
    return train, test


def sample_queries(test: list[ProductPoint], n: int, seed: int) -> list[ProductPoint]:
    """Proportional per category, at least min(30, all) of each, at most ``n`` in all (when n allows)."""
    rng = np.random.default_rng(seed + 1)
    by_cat: dict[str, list[ProductPoint]] = defaultdict(list)
    for p in test:
        by_cat[p.product.category].append(p)
    if n >= len(test):
        return list(test)
    floor = {c: min(ENOUGH_QUERIES, len(g)) for c, g in by_cat.items()}
    rest = n - sum(floor.values())
    share = {c: min(len(g), floor[c] + max(0, int(rest * len(g) / len(test)))) for c, g in by_cat.items()}
    # Rounding down leaves a few short of n: top up the largest categories that have products to spare.
    for c in sorted(by_cat, key=lambda c: -len(by_cat[c])):
        spare = min(n - sum(share.values()), len(by_cat[c]) - share[c])
        if spare > 0:
            share[c] += spare
    out: list[ProductPoint] = []
    for c in sorted(by_cat):
        g = by_cat[c]
        out += [g[i] for i in rng.permutation(len(g))[: min(len(g), share[c])]]
    return out


def classifier_accuracy(train: list[ProductPoint], test: list[ProductPoint], seed: int) -> tuple[Any, dict[str, Any]]:
    def arrays(ps: list[ProductPoint]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        return (
            np.stack([p.vectors["image"] for p in ps]),
            np.stack([p.vectors["text"] for p in ps]),
            [p.product.category for p in ps],
        )

    xi, xt, y = arrays(train)
    t0 = time.perf_counter()
    model = train_category_model(xi, xt, y, seed=seed)
    train_s = time.perf_counter() - t0
    ti, tt, ty = arrays([p for p in test if p.product.category in model.classes])
    truth = np.asarray(ty)
    rows: dict[str, Any] = {"train_products": len(y), "test_products": len(ty), "train_s": train_s}
    for feature, kwargs in (("image", {"image": ti}), ("text", {"text": tt}), ("both", {"image": ti, "text": tt})):
        pred = np.asarray(model.classes)[model.predict_proba(**kwargs).argmax(axis=1)]
        per = {c: float((pred[truth == c] == c).mean()) for c in sorted(set(ty))}
        rows[feature] = {"overall": float((pred == truth).mean()), "per_category": per}
    rows["test_counts"] = dict(Counter(ty))
    return model, rows


def ndcg(relevant: list[bool], available: int) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, r in enumerate(relevant) if r)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(K, available)))
    return dcg / ideal if ideal > 0 else 0.0


def score(q: ProductPoint, hits: list[Product], sub_counts: Counter[str]) -> dict[str, Any]:
    """One query's measures from its results, best first."""
    relevant = [h.subcategory == q.product.subcategory for h in hits]
    wanted = colours(q.product.title)
    same_colour = [bool(wanted & colours(h.title)) for h, r in zip(hits, relevant, strict=True) if r]
    return {
        "product_id": q.product.product_id,
        "category": q.product.category,
        "p10": sum(relevant) / K,
        "ndcg10": ndcg(relevant, sub_counts[q.product.subcategory] - 1),
        # Counted only for queries whose title names a colour.
        "colour_relevant": len(same_colour) if wanted else 0,
        "colour_same": sum(same_colour) if wanted else 0,
    }


def run(
    store: Any, settings: Any, queries: list[ProductPoint], cfg: Config, model: Any, sub_counts: Counter[str]
) -> dict[str, Any]:
    estimator = (lambda image, text: estimate(model, image, text)) if model is not None else None
    per_query = []
    started = time.perf_counter()
    for q in tqdm(queries, desc=cfg.name, unit="query", leave=False):
        opts = SimilarOptions(k=K, mode=cfg.mode, fusion=cfg.fusion, estimate_category=cfg.estimate_category)
        result = similar_products(store, q.product.product_id, settings, opts, estimator)
        scored = score(q, [h.product for h in result.hits], sub_counts)
        route = {"weights": result.route.weights, "route_category": result.route.category}
        per_query.append({**scored, **route, "route_probability": result.route.probability})
    elapsed = time.perf_counter() - started
    return {"config": cfg.name, "per_query": per_query, "ms_per_query": 1000 * elapsed / max(1, len(queries))}


def summarise(run_: dict[str, Any]) -> dict[str, Any]:
    by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in run_["per_query"]:
        by_cat[r["category"]].append(r)
    rows = run_["per_query"]
    return {
        "config": run_["config"],
        "p10": float(np.mean([r["p10"] for r in rows])),
        "ndcg10": float(np.mean([r["ndcg10"] for r in rows])),
        "p10_by_category": {c: float(np.mean([r["p10"] for r in rs])) for c, rs in sorted(by_cat.items())},
        "ndcg10_by_category": {c: float(np.mean([r["ndcg10"] for r in rs])) for c, rs in sorted(by_cat.items())},
        "queries_by_category": {c: len(rs) for c, rs in sorted(by_cat.items())},
        "colour_by_category": {c: colour_share(rs) for c, rs in sorted(by_cat.items())},
        "ms_per_query": run_["ms_per_query"],
    }


def colour_share(rows: list[dict[str, Any]]) -> float | None:
    relevant = sum(r["colour_relevant"] for r in rows)
    return sum(r["colour_same"] for r in rows) / relevant if relevant else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "relevance")
    parser.add_argument(
        "--joint-holdout",
        action="store_true",
        help="also train a joint model on the 80%% only and measure it on the queries (bench/relevance_joint.py)",
    )
    args = parser.parse_args()
    settings = get_settings()
    store = open_store(settings)
    try:
        points = [p for batch in store.scroll(batch_size=512) for p in batch]
        points = [p for p in points if {"image", "text"} <= set(p.vectors) and not p.product.category_estimated]
        joint = all("joint" in p.vectors for p in points)
        train, test = split(points, args.seed)
        model, accuracy = classifier_accuracy(train, test, args.seed)
        queries = sample_queries(test, args.queries, args.seed)
        sub_counts = Counter(p.product.subcategory for p in points)
        runs = [
            run(store, settings, queries, cfg, model, sub_counts)
            for cfg in tqdm(configs(settings.fusion, joint), desc="configs")
        ]
        if args.joint_holdout:
            from relevance_joint import holdout_run

            runs.insert(3, holdout_run(points, train, queries, settings, sub_counts, score, K))
    finally:
        store.close()
    summaries = [summarise(r) for r in runs]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, load {load}"
    write_report(args.out, machine, len(points), queries, accuracy, summaries, runs)


if __name__ == "__main__":
    main()
