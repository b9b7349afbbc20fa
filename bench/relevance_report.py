"""Tables and the failure list of bench/relevance.py (JSON with every query, Markdown for the README)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from niteru.store import ProductPoint

# Each category gets at least this many queries (or all it has in the held-out part); a category with
# fewer does not count towards the "routed >= best single modality" check.
ENOUGH_QUERIES = 30
# A routed query "picks the wrong modality" when the better single modality beats it by this much p@10.
FAILURE_MARGIN = 0.3
FAILURES_SHOWN = 8


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def relevance_table(summaries: list[dict[str, Any]]) -> list[str]:
    cats = list(summaries[0]["p10_by_category"])
    n = summaries[0]["queries_by_category"]
    head = "| category | queries | " + " | ".join(s["config"] for s in summaries) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(summaries)]
    for c in cats:
        cells = [_pct(s["p10_by_category"][c]) for s in summaries]
        lines.append(f"| {c} | {n[c]} | " + " | ".join(cells) + " |")
    total = sum(n.values())
    lines.append(f"| **all (p@10)** | {total} | " + " | ".join(f"**{_pct(s['p10'])}**" for s in summaries) + " |")
    lines.append("| **all (nDCG@10)** | | " + " | ".join(_pct(s["ndcg10"]) for s in summaries) + " |")
    lines.append("| ms per search | | " + " | ".join(f"{s['ms_per_query']:.0f}" for s in summaries) + " |")
    return lines


def _maybe(x: float | None) -> str:
    return "-" if x is None else _pct(x)


def lookalike_table(summaries: list[dict[str, Any]]) -> list[str]:
    """Every measure, per category and configuration, in one table (the overall rows first)."""
    head = "| category | configuration | queries | p@10 | nDCG@10 | variant r@1 | variant r@10 | colour | brand |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    cats = ["all", *summaries[0]["p10_by_category"]]
    for c in cats:
        for s in summaries:
            if c == "all":
                look, p10, nd, n = s["lookalike"], s["p10"], s["ndcg10"], sum(s["queries_by_category"].values())
            else:
                look, p10 = s["lookalike_by_category"][c], s["p10_by_category"][c]
                nd, n = s["ndcg10_by_category"][c], s["queries_by_category"][c]
            name = f"**{c}**" if c == "all" else c
            cells = [_pct(p10), _pct(nd), *(_maybe(look[m]) for m in ("variant_r1", "variant_r10", "colour", "brand"))]
            lines.append(f"| {name} | {s['config']} | {n} | " + " | ".join(cells) + " |")
    return lines


def target_check(summaries: list[dict[str, Any]]) -> list[str]:
    by = {s["config"]: s for s in summaries}
    image, text = by["image only"], by["text only"]
    routed = next(s for s in summaries if s["config"].startswith("routed (") and "estimated" not in s["config"])
    lines = [f"Target check for `{routed['config']}` (categories with at least {ENOUGH_QUERIES} queries):", ""]
    for c, n in routed["queries_by_category"].items():
        if n < ENOUGH_QUERIES:
            continue
        best = max(image["p10_by_category"][c], text["p10_by_category"][c])
        got = routed["p10_by_category"][c]
        verdict = "ok" if got >= best - 1e-9 else f"**below by {_pct(best - got)} points**"
        lines.append(f"- {c}: routed {_pct(got)} vs best single {_pct(best)}: {verdict}")
    best_all = max(image["p10"], text["p10"])
    lines.append(f"- overall: routed {_pct(routed['p10'])} vs best single {_pct(best_all)}")
    # Look-alike: not below the best of the modes that learn no label (image, text, the 50/50 blend, and the
    # hand-written routing table: the service before the joint vector and the fit).
    plain = [
        s
        for s in summaries
        if s["config"] in ("image only", "text only") or s["config"].startswith(("hybrid", "routed (hand table"))
    ]
    checks = (("variant_r1", "all"), ("colour", "all"), ("brand", "all"), ("colour", "fashion"), ("brand", "fashion"))
    for measure, scope in checks:

        def value(s: dict[str, Any], m: str = measure, c: str = scope) -> float | None:
            look = s["lookalike"] if c == "all" else s["lookalike_by_category"].get(c, {})
            v = look.get(m)
            return None if v is None else float(v)

        best_plain = max((v for s in plain if (v := value(s)) is not None), default=None)
        got = value(routed)
        if best_plain is None or got is None:
            continue
        verdict = "ok" if got >= best_plain - 1e-9 else f"**below by {_pct(best_plain - got)} points**"
        lines.append(
            f"- {measure} ({scope}): routed {_pct(got)} vs best of image/text/50-50/hand {_pct(best_plain)}: {verdict}"
        )
    return lines


def accuracy_table(acc: dict[str, Any]) -> list[str]:
    cats = list(acc["both"]["per_category"])
    lines = ["| category | test products | image | text | both |", "|---|---:|---:|---:|---:|"]
    for c in cats:
        cells = [_pct(acc[f]["per_category"][c]) for f in ("image", "text", "both")]
        lines.append(f"| {c} | {acc['test_counts'][c]} | " + " | ".join(cells) + " |")
    overall = [f"**{_pct(acc[f]['overall'])}**" for f in ("image", "text", "both")]
    lines.append(f"| **all** | {acc['test_products']} | " + " | ".join(overall) + " |")
    return lines


def failures(runs: list[dict[str, Any]], titles: dict[str, tuple[str, str]]) -> list[str]:
    by = {r["config"]: {q["product_id"]: q for q in r["per_query"]} for r in runs}
    routed_name = next(n for n in by if n.startswith("routed (") and "estimated" not in n)
    image, text, routed = by["image only"], by["text only"], by[routed_name]
    rows = []
    for pid, q in routed.items():
        best = max(image[pid]["p10"], text[pid]["p10"])
        if best - q["p10"] >= FAILURE_MARGIN:
            rows.append((best - q["p10"], pid, q))
    rows.sort(key=lambda r: (-r[0], r[1]))
    count = Counter(q["category"] for _, _, q in rows)
    lines = [
        f"{len(rows)} of {len(routed)} routed queries trail the better single modality by "
        f">= {int(FAILURE_MARGIN * 10)} of 10 results ({', '.join(f'{c} {n}' for c, n in count.most_common())}).",
        "",
        "| product | category / subcategory | title | image | text | routed | weights (image, text) |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for _, pid, q in rows[:FAILURES_SHOWN]:
        title, sub = titles[pid]
        w = q["weights"]
        lines.append(
            f"| {pid} | {q['category']} / {sub} | {title[:60]} | {_pct(image[pid]['p10'])} | "
            f"{_pct(text[pid]['p10'])} | {_pct(q['p10'])} | {w.get('image', 0):.2f}, {w.get('text', 0):.2f} |"
        )
    return lines


def write_report(
    out: Path,
    machine: str,
    n_products: int,
    queries: list[ProductPoint],
    accuracy: dict[str, Any],
    summaries: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    notes: list[str] | None = None,
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    titles = {q.product.product_id: (q.product.title, q.product.subcategory) for q in queries}
    payload = {"machine": machine, "products": n_products, "accuracy": accuracy, "summaries": summaries, "runs": runs}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    md = [
        f"Machine: {machine}. Store: {n_products} products; {len(queries)} leave-one-out queries from the held-out "
        "20% (stratified by category); precision@10 (%) = share of the 10 results in the query's subcategory.",
        "",
        *(notes or []),
        *relevance_table(summaries),
        "",
        *target_check(summaries),
        "",
        "Look-alike measures (`niteru.evaluation`, the rebuild's gate uses the same; docs/retrieval.md): each query "
        "re-listed as a variant (re-shot photo: crop, flip, small rotation, brightness; re-written title: brand "
        "dropped, words shuffled; another shop), searched without being stored: recall@1 and @10 of the original. "
        "Colour / brand kept: among the results in the query's subcategory, the share naming one of the query's "
        "colours (queries whose title names one) / of its brand (queries whose shop id is named in the title). "
        "'-': no query to measure.",
        "",
        *lookalike_table(summaries),
        "",
        f"Category estimation, trained on the 80% ({accuracy['train_products']} products, "
        f"{accuracy['train_s']:.0f} s), accuracy (%) on the 20%:",
        "",
        *accuracy_table(accuracy),
        "",
        *failures(runs, titles),
    ]
    text = "\n".join(md) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)
