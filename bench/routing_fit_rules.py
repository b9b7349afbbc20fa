"""The routing fit under different rules, side by side, measured on queries it never saw (issue #17).

On the store of ``NITERU_DATA_DIR`` (a rebuilt catalog: joint vectors and the rebuild's models):

1. Read the collection once; embed the fit's variants as the rebuild does (``route_fit.fit_inputs``, the
   live collection's models, ``route_fit_seed + 1``), once per distinct ``route_fit_variants`` of the sides.
2. Each side (``--side LABEL KEY=VALUE ...``: settings over the environment's) fits its table
   (``fit_table``); every side's fit is repeated ``--runs`` times, alternated, for the fit time.
3. Each table, and each reference mode (image only, text only, 50/50, the hand table), measured on queries
   outside the fit's validation split (at most 300 per category) and ``--variants`` re-listed variants of an
   even spread of them (another seed than the fit's): the fit's numpy query and measures, each query routed by
   its category's row.

Writes bench/results/<--out>.md (the reading below the marker is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from routing_fit_lexical import (  # noqa: E402
    figures,
    outside_queries,
    pct,
    table_routes,
    variants_at,
    weights,
)

from niteru.embedders import load_embedders  # noqa: E402
from niteru.evaluation import variant_embedder  # noqa: E402
from niteru.route_fit import fit_table  # noqa: E402
from niteru.route_grid import (  # noqa: E402
    Choice,
    FitData,
    Variants,
    fit_inputs,
)
from niteru.route_refs import reference_routes  # noqa: E402
from niteru.route_table import RouteTable  # noqa: E402
from niteru.settings import Settings, get_settings  # noqa: E402
from niteru.store import open_store  # noqa: E402

RESULTS = REPO / "bench" / "results"
MARKER = "<!-- reading -->"
MEASURES = ("p@10", "variant", "colour", "brand")


def parse_sides(raw: list[list[str]], base: Settings) -> dict[str, Settings]:
    sides = {}
    for label, *pairs in raw or [["main"]]:
        update: dict[str, Any] = {}
        for pair in pairs:
            key, value = pair.split("=", 1)
            update[key] = json.loads(value) if value[:1] in "[{0123456789.-tfn" else value
        sides[label] = Settings(**{**base.model_dump(), **update})
    return sides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", nargs="+", action="append", metavar="LABEL [KEY=VALUE]", help="a side")
    parser.add_argument("--runs", type=int, default=1, help="fits of each side, alternated")
    parser.add_argument("--variants", type=int, default=2000, help="variants of the outside queries")
    parser.add_argument("--out", default="routing_fit_rules", help="report name under bench/results/")
    args = parser.parse_args()
    settings = get_settings()
    sides = parse_sides(args.side, settings)
    load_before = os.getloadavg()
    store = open_store(settings)
    inputs: dict[int, tuple[FitData, Variants | None]] = {}
    try:
        collection = store.current_version() or "?"
        embedders = load_embedders(settings)
        variants_of = variant_embedder(settings, lambda: embedders)

        started = time.perf_counter()
        for s in sides.values():
            if s.route_fit_variants not in inputs:
                inputs[s.route_fit_variants] = fit_inputs(store, s, variants_of)
        inputs_s = time.perf_counter() - started
        data = next(iter(inputs.values()))[0]
        products = {p.product.product_id: p.product for batch in store.scroll(batch_size=1024) for p in batch}
        queries = outside_queries(data, settings)
        outside_variants = variants_at(
            data,
            [products[data.product_ids[q]] for q in queries],
            variants_of,
            args.variants,
            settings.route_fit_seed + 101,  # not a seed of the fit's rounds
        )
    finally:
        store.close()
    names = tuple(data.vectors)
    tables: dict[str, RouteTable] = {}
    times: dict[str, list[float]] = {label: [] for label in sides}
    for _ in range(args.runs):
        for label, s in sides.items():
            started = time.perf_counter()
            tables[label] = fit_table(inputs[s.route_fit_variants][0], s, collection, inputs[s.route_fit_variants][1])
            times[label].append(time.perf_counter() - started)
            print(label, f"{times[label][-1]:.1f} s", flush=True)
    categories = sorted(set(data.categories))
    refs = reference_routes(names, categories, settings)
    modes: dict[str, dict[str, Choice]] = {
        label: {"*": c} for label, c in refs.items() if not label.startswith("hand:")
    }
    modes["hand table"] = {label.removeprefix("hand:"): c for label, c in refs.items() if label.startswith("hand:")}
    measured = {f"mode: {label}": figures(data, queries, outside_variants, m, settings) for label, m in modes.items()}
    measured |= {
        label: figures(data, queries, outside_variants, table_routes(t, names), sides[label])
        for label, t in tables.items()
    }
    write(
        args, collection, data, inputs, outside_variants, queries, sides, tables, times, measured, inputs_s, load_before
    )


def write(
    args: argparse.Namespace,
    collection: str,
    data: FitData,
    inputs: dict[int, tuple[FitData, Variants | None]],
    outside_variants: Variants | None,
    queries: np.ndarray,
    sides: dict[str, Settings],
    tables: dict[str, RouteTable],
    times: dict[str, list[float]],
    measured: dict[str, dict[str, dict[str, float | None]]],
    inputs_s: float,
    load_before: tuple[float, float, float],
) -> None:
    out = RESULTS / f"{args.out}.md"
    kept = out.read_text(encoding="utf-8").split(MARKER, 1)[1] if out.is_file() and MARKER in out.read_text() else ""
    loads = [", ".join(f"{x:.2f}" for x in one) for one in (load_before, os.getloadavg())]
    base = get_settings().model_dump()
    lines = [
        "# The routing fit's rules side by side, on queries it never saw (issue #17)",
        "",
        "Command: `NITERU_DATA_DIR=<a rebuilt store> NITERU_CATALOG_DIR=<its catalog> PYTHONPATH=. "
        f"python bench/routing_fit_rules.py {shlex.join(sys.argv[1:])}`",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; load average "
        f"{loads[0]} before, {loads[1]} after. Collection {collection}: {len(data.product_ids)} products; fit "
        f"variants: {', '.join(str(0 if v is None else len(v.originals)) for _, v in inputs.values())}; reading "
        f"the collection and embedding them: {inputs_s:.1f} s. Outside: {len(queries)} queries (at most 300 per "
        f"category, outside the fit's split), {0 if outside_variants is None else len(outside_variants.originals)} "
        "variants of an even spread of them (another seed).",
        "",
        "| side | settings | grid | eligible | fit s, median (runs) |",
        "|---|---|---:|---:|---:|",
    ]
    for label, t in tables.items():
        changed = {k: v for k, v in sides[label].model_dump().items() if v != base.get(k)}
        runs = ", ".join(f"{x:.1f}" for x in times[label])
        lines.append(
            f"| {label} | `{changed or 'environment'}` | {t.info['grid']} | {t.info['eligible']} | "
            f"{statistics.median(times[label]):.1f} ({runs}) |"
        )
    lines += ["", "Rows fitted (weights image / text / joint / lexical, fusion; basis):", ""]
    lines += ["| category | " + " | ".join(tables) + " |", "|---|" + "---|" * len(tables)]
    for c in [*sorted(next(iter(tables.values())).rows), "(global)"]:
        cells = []
        for t in tables.values():
            row = t.global_row if c == "(global)" else t.rows[c]
            cells.append(f"{weights(row)} {row.fusion.value} ({row.basis})")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Outside the fit's split: p@10 / variant r@1 / colour / brand (%), each query routed by its category's row:",
        "",
        "| category | queries | variants | " + " | ".join(measured) + " |",
        "|---|---:|---:|" + "---|" * len(measured),
    ]
    first = next(iter(measured.values()))
    for c in first:
        cells = [" / ".join(pct(f[c][m]) for m in MEASURES) for f in measured.values()]
        lines.append(
            f"| {c} | {int(first[c]['queries'] or 0)} | {int(first[c]['variants'] or 0)} | " + " | ".join(cells) + " |"
        )
    out.write_text("\n".join(lines) + f"\n\n{MARKER}\n{kept.lstrip()}", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
