"""Two runs of bench/relevance.py side by side (e.g. the routing table of main against a new fit): overall and
fashion rows of every configuration, and the look-alike target lines of each run.

    python bench/relevance_compare.py OLD.json NEW.json --names old new > table.md

Prints markdown: per run and configuration p@10, variant recall@1 and @10, colour and brand (all queries, then
fashion), then ``relevance_report.target_check`` of each run. The configurations are those of the runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from relevance_report import target_check

MEASURES = ("variant_r1", "variant_r10", "colour", "brand")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def rows(name: str, summaries: list[dict[str, Any]], scope: str) -> list[str]:
    """One line per configuration of one run: its figures on ``scope`` (``all`` or a category)."""
    out = []
    for s in summaries:
        if scope == "all":
            p10, look, n = s["p10"], s["lookalike"], sum(s["queries_by_category"].values())
        elif scope in s["p10_by_category"]:
            p10, look, n = (
                s["p10_by_category"][scope],
                s["lookalike_by_category"][scope],
                s["queries_by_category"][scope],
            )
        else:
            continue
        cells = [_pct(p10), *(_pct(look.get(m)) for m in MEASURES)]
        out.append(f"| {name} | {scope} | {s['config']} | {n} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="relevance JSON files (bench/relevance.py --out)")
    parser.add_argument("--names", nargs="+", help="one name per run (default: the file names)")
    args = parser.parse_args()
    names = args.names or [p.stem for p in args.runs]
    runs = {n: json.loads(p.read_text())["summaries"] for n, p in zip(names, args.runs, strict=True)}
    head = "| run | scope | configuration | queries | p@10 | variant r@1 | variant r@10 | colour | brand |"
    lines = [head, "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for scope in ("all", "fashion"):
        for name, summaries in runs.items():
            lines += rows(name, summaries, scope)
    for name, summaries in runs.items():
        lines += ["", f"**{name}**: " + target_check(summaries)[0], "", *target_check(summaries)[2:]]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
