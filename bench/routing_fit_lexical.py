"""The routing fit with and without its lexical (BM25 title) axis, on the store of ``NITERU_DATA_DIR`` (a
rebuilt catalog-dev: joint vectors and the rebuild's models), issue #17.

1. Read the collection and embed the fit's variants once, as the rebuild does (``route_fit.fit_inputs``, the
   live collection's models, ``route_fit_seed + 1``).
2. ``fit_table`` with ``lexical`` off (the grid of main) and on (``route_fit_lexical_weights``), alternated
   ``--runs`` times: the tables are the same every run (seeded), the fit time is the median.
3. The scorer against the engine at the collection's scale: an Edge shard of every title's ``document``
   vector, ``--check`` queries (stored titles and the variants' re-written ones), every match compared.

Writes bench/results/routing_fit_lexical.md (the reading below the marker is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from niteru.embedders import load_embedders  # noqa: E402
from niteru.evaluation import variant_embedder  # noqa: E402
from niteru.lexical import AVG_TITLE_TOKENS, VECTOR, Bm25Index, TitleScores  # noqa: E402
from niteru.products import Product  # noqa: E402
from niteru.route_fit import fit_table, measure_all  # noqa: E402
from niteru.route_grid import (  # noqa: E402
    Choice,
    FitData,
    Variants,
    fit_inputs,
    in_validation,
)
from niteru.route_looks import pooled  # noqa: E402
from niteru.route_table import RouteTable, Row  # noqa: E402
from niteru.settings import Settings, get_settings  # noqa: E402
from niteru.store import ProductPoint, open_store  # noqa: E402

OUT = REPO / "bench" / "results" / "routing_fit_lexical.md"
MARKER = "<!-- reading -->"
SAVED = Path(os.environ.get("NITERU_BENCH_TABLES", "/tmp/routing_fit_lexical"))  # the fitted tables, in full


def pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}"


def weights(row: Row) -> str:
    w = row.weights
    dense = " / ".join(f"{w.get(n, 0.0):.1f}" for n in ("image", "text", "joint"))
    return f"{dense} / {w.get(VECTOR, 0.0):g}"


def look(row: Row, attribute: str) -> str:
    """The row's value of a look-alike measure; ``g``: judged on every validation query (too few of the
    category's name the attribute)."""
    value = pct(row.lookalike.get(attribute))
    return f"{value} g" if row.lookalike.get(f"{attribute}_scope") == "global" else value


def table_rows(label: str, table: RouteTable) -> list[str]:
    out = []
    for category, row in [*sorted(table.rows.items()), ("(global)", table.global_row)]:
        held = row.held_out
        check = f"{pct(held['row'])} vs {pct(held['global'])}" if held else "-"
        out.append(
            f"| {category} | {label} | {row.basis} | {weights(row)} | {row.fusion.value} | {row.queries} | "
            f"{pct(row.score)} | {look(row, 'variant')} | {look(row, 'colour')} | {look(row, 'brand')} | {check} |"
        )
    return out


def outside_queries(data: FitData, settings: Settings, per_category: int = 300) -> np.ndarray:
    """Queries the fit never saw: products outside its validation split (shop-given category and a
    subcategory), at most ``per_category`` per category (seeded)."""
    rng = np.random.default_rng(settings.route_fit_seed + 7)
    by_category: dict[str, list[int]] = {}
    for i, (pid, category) in enumerate(zip(data.product_ids, data.categories, strict=True)):
        if data.queryable[i] and not in_validation(pid, settings):
            by_category.setdefault(category, []).append(i)
    chosen = [
        sorted(rng.choice(r, min(per_category, len(r)), replace=False).tolist()) for _, r in sorted(by_category.items())
    ]
    return np.array([i for rows in chosen for i in rows], np.int64)


def variants_at(
    data: FitData,
    products: list[Product],
    embed: Callable[[list[Product], int], dict[str, ProductPoint]],
    n: int = 1000,
    seed: int = 0,
) -> Variants | None:
    """Variants of an even spread of ``n`` of ``products`` (one each, made with ``seed``), as ``fit_inputs``
    makes the fit's."""
    rows = {pid: i for i, pid in enumerate(data.product_ids)}
    n = min(n, len(products))
    embedded = embed([products[i] for i in np.linspace(0, len(products) - 1, n).round().astype(int)], seed)
    names = tuple(data.vectors)
    found = [pid for pid, v in embedded.items() if set(names) <= set(v.vectors)]
    if not found:
        return None
    vectors = {n: np.stack([embedded[pid].vectors[n] for pid in found]).astype(np.float32) for n in names}
    titles = [embedded[pid].product.title for pid in found]
    return Variants(np.array([rows[pid] for pid in found], np.int64), vectors, titles)


def table_routes(table: RouteTable, names: tuple[str, ...]) -> dict[str, Choice]:
    """The table's rows as routes over ``names``: by category, ``*`` for the global row."""

    def choice(row: Row) -> Choice:
        return Choice(row.fusion, tuple(row.weights.get(n, 0.0) for n in names), row.weights.get(VECTOR, 0.0))

    return {"*": choice(table.global_row), **{c: choice(r) for c, r in table.rows.items()}}


def figures(
    data: FitData,
    queries: np.ndarray,
    variants: Variants | None,
    chosen: dict[str, Choice],
    settings: Settings,
) -> dict[str, dict[str, float | None]]:
    """p@10, variant r@1, colour and brand per category and all (the fit's numpy query, its measures), each
    query routed by ``chosen[category]`` (``*``: any other); with the queries and variants counted."""
    categories = np.array([data.categories[q] for q in queries])
    route = {c: chosen.get(c, chosen["*"]) for c in set(categories.tolist())}
    bm25 = TitleScores(data.titles) if data.titles is not None and settings.lexical else None
    measured = measure_all(data, queries, list(set(route.values())), variants, settings, bm25)
    score, looks = np.zeros(len(queries)), np.zeros((6, len(queries)))
    for c, ch in route.items():
        mask = categories == c
        score[mask], looks[:, mask] = measured[ch].score[mask], measured[ch].looks[:, mask]
    out: dict[str, dict[str, float | None]] = {}
    for c in [*sorted(route), "all"]:
        mask = categories == c if c != "all" else np.ones(len(queries), bool)
        out[c] = {"queries": float(mask.sum()), "variants": float(looks[5][mask].sum())}
        out[c] |= {"p@10": float(score[mask].mean())} | {
            a: pooled(looks, mask, a) for a in ("variant", "colour", "brand")
        }
    return out


def outside_figures(
    data: FitData, queries: np.ndarray, variants: Variants | None, table: RouteTable, settings: Settings
) -> dict[str, dict[str, float | None]]:
    """Each category's row measured on queries outside the fit's split (``figures``)."""
    return figures(data, queries, variants, table_routes(table, tuple(data.vectors)), settings)


def write_outside(
    out: Path, outside: dict[str, dict[str, dict[str, float | None]]], queries: int, variants: int
) -> None:
    """Appended above the reading: the rows on queries outside the fit's split."""
    text = out.read_text(encoding="utf-8")
    head, reading = text.split(MARKER, 1)
    lines = [
        f"Outside the fit's validation split ({queries} queries, at most 300 per category, and {variants} variants "
        "of an even spread of them; the fit's numpy query and measures, each query routed by its category's row "
        "of the side's table; `-`: nothing to measure):",
        "",
        "| category | queries | " + " | ".join(f"{side}: p@10 / variant / colour / brand" for side in outside) + " |",
        "|---|---:|" + "---|" * len(outside),
    ]
    first = next(iter(outside.values()))
    for c in first:
        cells = [" / ".join(pct(f[c][m]) for m in ("p@10", "variant", "colour", "brand")) for f in outside.values()]
        lines.append(f"| {c} | {int(first[c]['queries'] or 0)} | " + " | ".join(cells) + " |")
    out.write_text(head.rstrip() + "\n\n" + "\n".join(lines) + f"\n\n{MARKER}{reading}", encoding="utf-8")


def check_scorer(titles: list[str], texts: list[str]) -> tuple[int, float, float]:
    """Matches compared, their largest relative difference, and the seconds of our scores of them."""
    ours = TitleScores(titles)
    with Bm25Index(titles, avg_len=AVG_TITLE_TOKENS) as engine:
        found = [engine.search(t, 500) for t in texts]
        started = time.perf_counter()
        ids = np.array([[i for i, _ in f] + [-1] * (500 - len(f)) for f in found], np.int64)
        scores = ours.scores(texts, ids)
        ours_s = time.perf_counter() - started
    worst, seen = 0.0, 0
    for row, f in enumerate(found):
        for j, (_, s) in enumerate(f):
            worst = max(worst, abs(scores[row, j] - s) / abs(s))
            seen += 1
    return seen, worst, ours_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="fits of each side, alternated")
    parser.add_argument("--check", type=int, default=300, help="queries of the scorer-vs-engine check")
    parser.add_argument("--out", type=Path, default=OUT, help="the report (its reading below the marker is kept)")
    wider_help = "a third side: the lexical axis with these weights added (is the grid's edge binding?)"
    parser.add_argument("--wider", type=float, nargs="*", default=[], help=wider_help)
    args = parser.parse_args()
    settings = get_settings()
    load_before = os.getloadavg()
    store = open_store(settings)
    try:
        collection = store.current_version() or "?"
        embedders = load_embedders(settings)
        variants_of = variant_embedder(settings, lambda: embedders)

        started = time.perf_counter()
        data, variants = fit_inputs(store, settings, variants_of)
        inputs_s = time.perf_counter() - started
        products = {p.product.product_id: p.product for batch in store.scroll(batch_size=1024) for p in batch}
        queries_out = outside_queries(data, settings)
        variants_out = variants_at(
            data, [products[data.product_ids[q]] for q in queries_out], variants_of, seed=settings.route_fit_seed + 1
        )
    finally:
        store.close()
    base = settings.model_dump()
    sides = {
        "before (no lexical)": Settings(**{**base, "lexical": False}),
        "after (lexical axis)": Settings(**{**base, "lexical": True}),
    }
    if args.wider:
        wider = sorted({*settings.route_fit_lexical_weights, *args.wider})
        sides["after, wider axis"] = Settings(**{**base, "lexical": True, "route_fit_lexical_weights": wider})
    tables: dict[str, RouteTable] = {}
    times: dict[str, list[float]] = {s: [] for s in sides}
    for _ in range(args.runs):
        for side, s in sides.items():
            started = time.perf_counter()
            tables[side] = fit_table(data, s, collection, variants)
            times[side].append(time.perf_counter() - started)
            print(side, f"{times[side][-1]:.1f} s", flush=True)
    outside = {side: outside_figures(data, queries_out, variants_out, t, sides[side]) for side, t in tables.items()}
    assert data.titles is not None
    rng = np.random.default_rng(0)
    texts = [data.titles[i] for i in rng.choice(len(data.titles), args.check // 2, replace=False)]
    if variants is not None and variants.titles:
        texts += [variants.titles[i] for i in rng.choice(len(variants.titles), args.check // 2, replace=False)]
    seen, worst, ours_s = check_scorer(data.titles, texts)
    load_after = os.getloadavg()
    check = (
        f"Scorer vs engine (an Edge shard of every title's `document` vector, {len(texts)} queries: stored "
        f"titles and variants' re-written ones, up to 500 matches each): {seen} matches, largest relative "
        f"difference {worst:.1e}; our scores of those pairs {ours_s:.2f} s."
    )
    print(check)
    write(args, collection, data.product_ids, variants, tables, times, inputs_s, (load_before, load_after), check)
    write_outside(args.out, outside, len(queries_out), 0 if variants_out is None else len(variants_out.originals))


def write(
    args: argparse.Namespace,
    collection: str,
    products: list[str],
    variants: Any,
    tables: dict[str, RouteTable],
    times: dict[str, list[float]],
    inputs_s: float,
    loads: tuple[tuple[float, float, float], tuple[float, float, float]],
    check: str,
) -> None:
    out: Path = args.out
    kept = out.read_text(encoding="utf-8").split(MARKER, 1)[1] if out.is_file() and MARKER in out.read_text() else ""
    load = [", ".join(f"{x:.2f}" for x in one) for one in loads]
    lines = [
        "# The routing fit with a lexical (BM25 title) weight (issue #17)",
        "",
        "Command: `NITERU_DATA_DIR=<a rebuilt catalog-dev store> NITERU_CATALOG_DIR=<catalog-dev> PYTHONPATH=. "
        f"python bench/routing_fit_lexical.py {' '.join(sys.argv[1:])}`",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; load average "
        f"{load[0]} before, {load[1]} after (another worker shares the cores). Collection {collection}: "
        f"{len(products)} products; {0 if variants is None else len(variants.originals)} fit variants; reading "
        f"the collection and embedding the variants once: {inputs_s:.1f} s.",
        "",
        check,
        "",
        "| side | grid (routes) | eligible | fit s, median (runs) | search + measures s (last run) |",
        "|---|---:|---:|---:|---:|",
    ]
    for side, t in tables.items():
        runs = ", ".join(f"{x:.1f}" for x in times[side])
        lines.append(
            f"| {side} {t.info['lexical_weights']} | {t.info['grid']} | {t.info['eligible']} | "
            f"{statistics.median(times[side]):.1f} ({runs}) | {t.info['search_s']} |"
        )
    lines += [
        "",
        "Fitted rows: weights image / text / joint / lexical; p@10, variant r@1, colour and brand consistency on "
        "the category's validation queries (the look-alike scopes of the fit: a category with too few queries "
        "naming an attribute is judged on all, marked g; `route_looks`); held-out: the category's choice vs the "
        "global row (or its stand-in) on the held-out half of its queries, p@10. Floors: the table JSON "
        f"({SAVED}).",
        "",
        "| category | side | basis | weights i / t / j / lex | fusion | val. queries | p@10 | variant r@1 | colour "
        "| brand | held-out |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    categories = sorted(tables["before (no lexical)"].rows)
    for category in [*categories, "(global)"]:
        for side, t in tables.items():
            lines += [r for r in table_rows(side, t) if r.startswith(f"| {category} |")]
    refs = tables["after (lexical axis)"].info["references"]  # the same on every side (no bonus)
    lines += ["", "Reference modes (all validation queries): p@10 / variant / colour / brand:", ""]
    lines += [
        f"- {label}: {pct(m['score'])} / {pct(m['variant'])} / {pct(m['colour'])} / {pct(m['brand'])}"
        for label, m in refs.items()
    ]
    SAVED.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(tables.values()):
        (SAVED / f"table-{i}.json").write_text(json.dumps(t.to_json(), indent=1, ensure_ascii=False))
    out.write_text("\n".join(lines) + f"\n\n{MARKER}\n{kept.lstrip()}", encoding="utf-8")


if __name__ == "__main__":
    main()
