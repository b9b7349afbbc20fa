"""Relevance of similar products by route, on the ingested dev catalog: does routing beat either modality?

1. Read every stored product (vectors and labels) from the store of ``NITERU_DATA_DIR`` (ingest it first:
   ``NITERU_DATA_DIR=data/full niteru ingest``).
2. Split the products 80/20 by category (seeded). The category classifier is trained on the 80% and its
   accuracy is measured on the 20%, per category and per feature set (image, text, both).
3. Queries: a fixed stratified sample (``--queries``, default 2,000) of the 20%, every category present,
   taken from the products outside the routing fit's validation split (``--split outside``, the honest
   hold-out) or inside it (``--split inside``: what the fit saw, to measure how much that matters).
   Each query runs through ``similar_products``, the function behind ``GET /v1/products/{id}/similar``,
   against the whole store (leave-one-out: the query itself is never a result) in each configuration:
   image only, text only, fixed 50/50 hybrid, routed by the table the last rebuild fitted (its fusion
   per category), routed by the hand-written table of issue 5 (``DEFAULT_WEIGHTS`` as the override
   setting), and routed by the estimated category (the classifier trained on the 80%, the fitted table).
4. precision@10 = share of the 10 results in the query's subcategory; nDCG@10 with binary relevance (same
   subcategory), the ideal being min(10, other products of that subcategory) relevant results first.
When the store holds joint vectors (after a rebuild trained the joint model), ``joint only`` is measured
too; that model was trained on every stored product's label, the queries' included, so its precision@10
is optimistic. ``--joint-holdout`` adds a joint model trained on the 80% only (bench/relevance_joint.py).

5. The look-alike measures of ``niteru.evaluation`` (the rebuild's gate uses the same functions), in each
   configuration: each query product re-listed as a variant (re-shot photo, re-written title, another
   shop; embedded by the service's models, searched without being stored): variant recall@1 and @10;
   among the results in the query's subcategory, the share naming one of its colours and of its brand.

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
from niteru.embedders import load_embedders  # noqa: E402
from niteru.evaluation import QueryOutcome, Variant, embed_variants, evaluate, make_variants, measures  # noqa: E402
from niteru.fetch import read_image_path  # noqa: E402
from niteru.fusion import Fusion  # noqa: E402
from niteru.route_grid import in_validation  # noqa: E402
from niteru.route_table import RouteTable, load_route_table  # noqa: E402
from niteru.routing import DEFAULT_WEIGHTS, Mode  # noqa: E402
from niteru.settings import get_settings  # noqa: E402
from niteru.similar import SimilarOptions  # noqa: E402
from niteru.store import ProductPoint, open_store  # noqa: E402
from niteru.store.records import LEXICAL  # noqa: E402

RESULTS = REPO / "bench" / "results"
K = 10


@dataclass(frozen=True)
class Config:
    name: str
    mode: Mode
    fusion: Fusion | None = None
    estimate_category: bool = False
    hand_table: bool = False  # route by DEFAULT_WEIGHTS (as the override setting), not the fitted table


def configs(default: Fusion, fitted: RouteTable | None, joint: bool) -> list[Config]:
    routed = "fitted" if fitted is not None else f"default table, {default.value}"
    return [
        Config("image only", Mode.image),
        Config("text only", Mode.text),
        *([Config("joint only (model trained on every product, queries included)", Mode.joint)] if joint else []),
        Config(f"hybrid 50/50 ({default.value})", Mode.hybrid, default),
        Config(f"routed ({routed})", Mode.auto),
        Config(f"routed (hand table, {default.value})", Mode.auto, default, hand_table=True),
        Config(f"routed, estimated category ({routed})", Mode.auto, None, True),
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


def run(
    store: Any,
    settings: Any,
    variants: list[Variant],
    embedded: dict[str, ProductPoint],
    cfg: Config,
    model: Any,
    sub_counts: Counter[str],
    fitted: RouteTable | None,
) -> dict[str, Any]:
    """Every measure of every query in one configuration, through ``niteru.evaluation.evaluate`` (which
    calls ``similar_products`` and, for the variant, ``similar_to_vectors``)."""
    estimator = (lambda image, text: estimate(model, image, text)) if model is not None else None
    if cfg.hand_table:
        settings, fitted = settings.model_copy(update={"route_weights": DEFAULT_WEIGHTS}), None
    opts = SimilarOptions(k=K, mode=cfg.mode, fusion=cfg.fusion, estimate_category=cfg.estimate_category)
    subs = {v.original.product_id: v.original.subcategory for v in variants}
    started = time.perf_counter()
    outcomes = evaluate(store, settings, variants, embedded, options=opts, estimate=estimator, fitted=fitted)
    elapsed = time.perf_counter() - started
    ms = 1000 * elapsed / max(1, 2 * len(outcomes))  # two searches per query (the product and its variant)
    return {"config": cfg.name, "per_query": rows(outcomes, subs, sub_counts), "outcomes": outcomes, "ms_per_query": ms}


def rows(outcomes: list[QueryOutcome], subs: dict[str, str], sub_counts: Counter[str]) -> list[dict[str, Any]]:
    """The per-query rows of the report (and its JSON)."""
    return [
        {
            "product_id": o.product_id,
            "category": o.category,
            "p10": o.p10,
            "ndcg10": ndcg(o.relevant, sub_counts[subs[o.product_id]] - 1),
            "variant_rank": o.variant_rank,
            "colour": [o.colour_kept, o.colour_total],
            "brand": [o.brand_kept, o.brand_total],
            "weights": o.weights,
        }
        for o in outcomes
    ]


def summarise(run_: dict[str, Any]) -> dict[str, Any]:
    by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    looks: dict[str, list[QueryOutcome]] = defaultdict(list)
    for r, o in zip(run_["per_query"], run_.pop("outcomes"), strict=True):
        by_cat[r["category"]].append(r)
        looks[r["category"]].append(o)
    rows = run_["per_query"]
    everything = [o for os_ in looks.values() for o in os_]
    return {
        "config": run_["config"],
        "p10": float(np.mean([r["p10"] for r in rows])),
        "ndcg10": float(np.mean([r["ndcg10"] for r in rows])),
        "p10_by_category": {c: float(np.mean([r["p10"] for r in rs])) for c, rs in sorted(by_cat.items())},
        "ndcg10_by_category": {c: float(np.mean([r["ndcg10"] for r in rs])) for c, rs in sorted(by_cat.items())},
        "lookalike": measures(everything).as_dict(),
        "lookalike_by_category": {c: measures(os_).as_dict() for c, os_ in sorted(looks.items())},
        "queries_by_category": {c: len(rs) for c, rs in sorted(by_cat.items())},
        "ms_per_query": run_["ms_per_query"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "relevance")
    parser.add_argument(
        "--split",
        choices=("outside", "inside"),
        default="outside",
        help="queries from outside the routing fit's validation split (default) or inside it",
    )
    parser.add_argument(
        "--joint-holdout",
        action="store_true",
        help="also train a joint model on the 80%% only and measure it on the queries (bench/relevance_joint.py)",
    )
    args = parser.parse_args()
    settings = get_settings()
    store = open_store(settings)
    try:
        fitted = load_route_table(settings, store.current_version())
        points = [p for batch in store.scroll(batch_size=512) for p in batch]
        points = [p for p in points if {"image", "text"} <= set(p.vectors) and not p.product.category_estimated]
        joint = bool(points) and all("joint" in p.vectors for p in points)
        train, test = split(points, args.seed)
        model, accuracy = classifier_accuracy(train, test, args.seed)
        inside = args.split == "inside"
        pool = [p for p in test if in_validation(p.product.product_id, settings) == inside]
        queries = sample_queries(pool, args.queries, args.seed)
        sub_counts = Counter(p.product.subcategory for p in points)
        # The variants: made once (seeded), embedded once by the store's own models, queried in every config.
        variants = make_variants([q.product for q in queries], lambda ref: read_image_path(ref, settings), args.seed)
        if len(variants) < len(queries):
            sys.exit(f"{len(queries) - len(variants)} query images unreadable: is NITERU_CATALOG_DIR the catalog?")
        embedded = embed_variants(variants, load_embedders(settings))
        runs = [
            run(store, settings, variants, embedded, cfg, model, sub_counts, fitted)
            for cfg in tqdm(configs(settings.fusion, fitted, joint), desc="configs")
        ]
        if args.joint_holdout:
            from relevance_joint import holdout_run

            held = holdout_run(points, train, variants, embedded, settings)
            subs = {v.original.product_id: v.original.subcategory for v in variants}
            runs.insert(3, {**held, "per_query": rows(held["outcomes"], subs, sub_counts)})
    finally:
        store.close()
    summaries = [summarise(r) for r in runs]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, load average {load}"
    notes = [f"Queries from {args.split} the routing fit's validation split.", "", *fitted_table(fitted)]
    write_report(args.out, machine, len(points), queries, accuracy, summaries, runs, notes)


def fitted_table(fitted: RouteTable | None) -> list[str]:
    """The table the queries were routed by, with the fit's own figures (on its validation queries)."""
    if fitted is None:
        return ["No fitted routing table for this collection (run `niteru rebuild`): the default table routed.", ""]
    rows = [*sorted(fitted.rows.items()), ("(global)", fitted.global_row)]
    names = [n for n in fitted.global_row.weights if n != LEXICAL]  # the dense vectors, each also alone
    weighed = [*names, *([LEXICAL] if any(r.weights.get(LEXICAL) for _, r in rows) else [])]
    head = "| category | basis | " + " | ".join(weighed) + " | fusion | val. queries | p@10 | global | "
    head += " | ".join(f"{n} only" for n in names) + " |"
    lines = [
        f"Fitted routing table {fitted.version} (objective {fitted.objective}; {fitted.info.get('search', '')}; "
        f"fit {fitted.info.get('fit_s')} s, of which search and scoring {fitted.info.get('search_s')} s; "
        f"{fitted.info.get('validation_queries')} validation queries, {fitted.info.get('grid')} routes):",
        "",
        head,
        "|---|---|" + "---:|" * len(weighed) + "---|---:|---:|---:|" + "---:|" * len(names),
    ]
    for category, row in rows:
        cells = [f"{row.weights.get(n, 0.0):.1f}" for n in names]
        cells += [f"{row.weights.get(LEXICAL, 0.0):g}" for n in weighed if n == LEXICAL]
        singles = [f"{100 * row.single.get(n, 0):.1f}" for n in names]
        lines.append(
            f"| {category} | {row.basis} | " + " | ".join(cells) + f" | {row.fusion.value} | {row.queries} | "
            f"{100 * (row.score or 0):.1f} | {100 * (row.global_score or 0):.1f} | " + " | ".join(singles) + " |"
        )
    return [*lines, ""]


if __name__ == "__main__":
    main()
