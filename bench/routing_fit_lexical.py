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
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from niteru.embedders import load_embedders  # noqa: E402
from niteru.evaluation import embed_variants, make_variants  # noqa: E402
from niteru.lexical import AVG_TITLE_TOKENS, VECTOR, Bm25Index, TitleScores  # noqa: E402
from niteru.photos import read_photo  # noqa: E402
from niteru.products import Product  # noqa: E402
from niteru.route_fit import fit_inputs, fit_table  # noqa: E402
from niteru.route_table import RouteTable, Row  # noqa: E402
from niteru.settings import Settings, get_settings  # noqa: E402
from niteru.store import ProductPoint, open_store  # noqa: E402

OUT = REPO / "bench" / "results" / "routing_fit_lexical.md"
MARKER = "<!-- reading -->"


def pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}"


def weights(row: Row) -> str:
    w = row.weights
    dense = " / ".join(f"{w.get(n, 0.0):.1f}" for n in ("image", "text", "joint"))
    return f"{dense} / {w.get(VECTOR, 0.0):g}"


def table_rows(label: str, table: RouteTable) -> list[str]:
    out = []
    for category, row in [*sorted(table.rows.items()), ("(global)", table.global_row)]:
        look = row.lookalike
        out.append(
            f"| {category} | {label} | {row.basis} | {weights(row)} | {row.fusion.value} | {row.queries} | "
            f"{pct(row.score)} | {pct(look.get('variant'))} | {pct(look.get('colour'))} | {pct(look.get('brand'))} |"
        )
    return out


def check_scorer(titles: list[str], texts: list[str]) -> tuple[int, float, float, float]:
    """Matches compared, their largest relative difference, and the seconds of our scores and the engine's."""
    started = time.perf_counter()
    ours = TitleScores(titles)
    with Bm25Index(titles, avg_len=AVG_TITLE_TOKENS) as engine:
        found = [engine.search(t, 500) for t in texts]
        engine_s = time.perf_counter() - started
        started = time.perf_counter()
        ids = np.array([[i for i, _ in f] + [-1] * (500 - len(f)) for f in found], np.int64)
        scores = ours.scores(texts, ids)
        ours_s = time.perf_counter() - started
    worst, seen = 0.0, 0
    for row, f in enumerate(found):
        for j, (_, s) in enumerate(f):
            worst = max(worst, abs(scores[row, j] - s) / abs(s))
            seen += 1
    return seen, worst, ours_s, engine_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="fits of each side, alternated")
    parser.add_argument("--check", type=int, default=300, help="queries of the scorer-vs-engine check")
    args = parser.parse_args()
    settings = get_settings()
    load_before = os.getloadavg()
    store = open_store(settings)
    try:
        collection = store.current_version() or "?"
        embedders = load_embedders(settings)

        def variants_of(products: list[Product] | Any) -> dict[str, ProductPoint]:
            made = make_variants(products, lambda ref: read_photo(ref, settings), settings.route_fit_seed + 1)
            return embed_variants(made, embedders)

        started = time.perf_counter()
        data, variants = fit_inputs(store, settings, variants_of)
        inputs_s = time.perf_counter() - started
    finally:
        store.close()
    sides = {"before (no lexical)": False, "after (lexical axis)": True}
    tables: dict[str, RouteTable] = {}
    times: dict[str, list[float]] = {s: [] for s in sides}
    for _ in range(args.runs):
        for side, on in sides.items():
            s = Settings(**{**settings.model_dump(), "lexical": on})
            started = time.perf_counter()
            tables[side] = fit_table(data, s, collection, variants)
            times[side].append(time.perf_counter() - started)
            print(side, f"{times[side][-1]:.1f} s", flush=True)
    assert data.titles is not None
    rng = np.random.default_rng(0)
    texts = [data.titles[i] for i in rng.choice(len(data.titles), args.check // 2, replace=False)]
    if variants is not None and variants.titles:
        texts += [variants.titles[i] for i in rng.choice(len(variants.titles), args.check // 2, replace=False)]
    seen, worst, ours_s, _ = check_scorer(data.titles, texts)
    load_after = os.getloadavg()
    check = (
        f"Scorer vs engine (an Edge shard of every title's `document` vector, {len(texts)} queries: stored "
        f"titles and variants' re-written ones, up to 500 matches each): {seen} matches, largest relative "
        f"difference {worst:.1e}; our scores of those pairs {ours_s:.2f} s."
    )
    print(check)
    write(args, collection, data.product_ids, variants, tables, times, inputs_s, (load_before, load_after), check)


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
    kept = OUT.read_text(encoding="utf-8").split(MARKER, 1)[1] if OUT.is_file() and MARKER in OUT.read_text() else ""
    load = [", ".join(f"{x:.2f}" for x in one) for one in loads]
    lines = [
        "# The routing fit with a lexical (BM25 title) weight (issue #17)",
        "",
        "Command: `NITERU_DATA_DIR=<a rebuilt catalog-dev store> NITERU_CATALOG_DIR=<catalog-dev> PYTHONPATH=. "
        f"python bench/routing_fit_lexical.py --runs {args.runs}`",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; load average "
        f"{load[0]} before, {load[1]} after (another worker shares the cores). Collection {collection}: "
        f"{len(products)} products; {0 if variants is None else len(variants.originals)} fit variants; reading "
        f"the collection and embedding the variants once: {inputs_s:.1f} s.",
        "",
        f"Lexical weights tried (wsum only): {tables['after (lexical axis)'].info['lexical_weights']}.",
        "",
        check,
        "",
        "| side | grid (routes) | eligible | fit s, median (runs) | search + measures s (last run) |",
        "|---|---:|---:|---:|---:|",
    ]
    for side, t in tables.items():
        runs = ", ".join(f"{x:.1f}" for x in times[side])
        lines.append(
            f"| {side} | {t.info['grid']} | {t.info['eligible']} | {statistics.median(times[side]):.1f} ({runs}) | "
            f"{t.info['search_s']} |"
        )
    lines += [
        "",
        "Fitted rows: weights image / text / joint / lexical; p@10, variant r@1, colour and brand consistency on "
        "the category's validation queries (the look-alike scopes of the fit: a category with too few queries "
        "naming an attribute is judged on all; `route_looks`). Reference modes and floors: the table JSON.",
        "",
        "| category | side | basis | weights i / t / j / lex | fusion | val. queries | p@10 | variant r@1 | colour "
        "| brand |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    categories = sorted(tables["before (no lexical)"].rows)
    for category in [*categories, "(global)"]:
        for side, t in tables.items():
            lines += [r for r in table_rows(side, t) if r.startswith(f"| {category} |")]
    refs = tables["after (lexical axis)"].info["references"]
    lines += ["", "Reference modes (all validation queries): p@10 / variant / colour / brand:", ""]
    lines += [
        f"- {label}: {pct(m['score'])} / {pct(m['variant'])} / {pct(m['colour'])} / {pct(m['brand'])}"
        for label, m in refs.items()
    ]
    OUT.write_text("\n".join(lines) + f"\n\n{MARKER}\n{kept.lstrip()}", encoding="utf-8")


if __name__ == "__main__":
    main()
