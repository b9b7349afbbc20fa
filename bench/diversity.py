"""Diversity (maximal marginal relevance) on similar products: variety gained against precision lost.

On the ingested dev catalog (``NITERU_DATA_DIR``), a fixed seeded sample of products per category asks
for its 10 similar products through ``similar_products`` (the code behind ``GET .../similar``), with
``diversity`` 0 (today's ranking), 0.3, 0.5 and 0.7, in two modes: ``auto`` (the routed, fused query,
whose MMR runs in the service) and ``image`` (one vector, the engine's own MMR). Per category and mode:

- distinct shops and distinct titles (case-folded) among the 10: the variety the first page shows;
- precision@10, the share of the 10 in the query's subcategory: the cost;
- median milliseconds per query, the diversities of one query run one after the other so that the load
  of a shared machine weighs on each alike (the ratio to diversity 0 is what to read, not the figure).

Writes bench/results/diversity.md. ``--per-category 10`` for a quick look.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from niteru.routing import Mode  # noqa: E402
from niteru.settings import get_settings  # noqa: E402
from niteru.similar import SimilarOptions, similar_products  # noqa: E402
from niteru.store import Hit, ProductPoint, open_store  # noqa: E402

RESULTS = REPO / "bench" / "results"
K = 10
DIVERSITIES = (0.0, 0.3, 0.5, 0.7)
MODES = (Mode.auto, Mode.image)
METRICS = ("shops", "titles", "p10")
NOTES = [
    "Reading it: precision@10 counts results of the query's own subcategory, so it falls by construction",
    "as diversity brings in other kinds; what is worth paying is a judgement, not a figure. Grocery (food,",
    "drinks_dairy) has one shop and one title per subcategory (catalog README), so there distinct titles are",
    "distinct classes and diversity can only swap same-class results for other classes. A fused query with",
    "diversity asks the engine for the MMR candidates (50) with their vectors instead of k results.",
]


def sample(points: list[ProductPoint], per_category: int, seed: int) -> list[ProductPoint]:
    """Up to ``per_category`` products of each category with at least 5 (seeded, by product id)."""
    by_cat: dict[str, list[ProductPoint]] = defaultdict(list)
    for p in sorted(points, key=lambda p: p.product.product_id):
        by_cat[p.product.category].append(p)
    rng = np.random.default_rng(seed)
    out: list[ProductPoint] = []
    for cat in sorted(by_cat):
        group = by_cat[cat]
        if len(group) >= 5:
            out += [group[i] for i in rng.permutation(len(group))[:per_category]]
    return out


def measures(query: ProductPoint, hits: list[Hit]) -> dict[str, float]:
    return {
        "shops": len({h.product.shop_id for h in hits}),
        "titles": len({" ".join(h.product.title.casefold().split()) for h in hits}),
        "p10": sum(h.product.subcategory == query.product.subcategory for h in hits) / K,
    }


def table(mode: Mode, rows: dict[tuple[str, float], list[dict[str, float]]], cats: list[str]) -> list[str]:
    head = "| category | queries | " + " | ".join(f"d={d}" for d in DIVERSITIES) + " |"
    lines = [
        f"### mode={mode.value}: distinct shops / distinct titles / precision@10 (%) in the top {K}",
        "",
        head,
        "|---|---:|" + "---:|" * len(DIVERSITIES),
    ]
    for cat in [*cats, "all"]:
        n = len(rows[(cat, 0.0)])
        cells = []
        for d in DIVERSITIES:
            m = {k: float(np.mean([r[k] for r in rows[(cat, d)]])) for k in METRICS}
            cells.append(f"{m['shops']:.1f} / {m['titles']:.1f} / {100 * m['p10']:.1f}")
        name = f"**{cat}**" if cat == "all" else cat
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    ms = [float(np.median([r["ms"] for r in rows[("all", d)]])) for d in DIVERSITIES]
    lines.append(
        "| median ms per query (ratio to d=0) | | " + " | ".join(f"{m:.0f} ({m / ms[0]:.2f}x)" for m in ms) + " |"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-category", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "diversity.md")
    args = parser.parse_args()
    settings = get_settings()
    load_before = os.getloadavg()
    store = open_store(settings)
    rows: dict[Mode, dict[tuple[str, float], list[dict[str, float]]]] = {m: defaultdict(list) for m in MODES}
    try:
        points = [p for batch in store.scroll(batch_size=512) for p in batch]
        points = [p for p in points if len(p.vectors) == 2 and not p.product.category_estimated]
        queries = sample(points, args.per_category, args.seed)
        for q in tqdm(queries, unit="query"):
            for mode in MODES:
                for d in DIVERSITIES:
                    options = SimilarOptions(k=K, mode=mode, diversity=d)
                    t0 = time.perf_counter()
                    hits = similar_products(store, q.product.product_id, settings, options).hits
                    row = measures(q, hits) | {"ms": 1000 * (time.perf_counter() - t0)}
                    rows[mode][(q.product.category, d)].append(row)
                    rows[mode][("all", d)].append(row)
    finally:
        store.close()
    load_after = os.getloadavg()
    cats = sorted({q.product.category for q in queries})
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    lines = [
        "# Diversity (MMR) on similar products",
        "",
        f"Machine: {machine}; load average (1, 5, 15 min) {', '.join(f'{x:.1f}' for x in load_before)} before, "
        f"{', '.join(f'{x:.1f}' for x in load_after)} after. The machine was shared with other work: the "
        "milliseconds are noisy, their ratios (each query's diversities run back to back) are what counts.",
        "",
        f"Store: {len(points)} products; {len(queries)} queries (up to {args.per_category} per category, seed "
        f"{args.seed}), each against the whole store (never itself a result). Command: "
        f"`NITERU_DATA_DIR=... python bench/diversity.py --per-category {args.per_category}`.",
        "",
        "Each cell: distinct shops / distinct titles / precision@10 (same subcategory, %). d = `diversity`.",
        "",
    ]
    for mode in MODES:
        lines += [*table(mode, rows[mode], cats), ""]
    lines += NOTES
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
