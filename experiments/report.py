"""Rows to files: CSV + JSON of every row, a Markdown summary with the Pareto front, and two plots.

The Pareto front is over (recall@10 up, single-thread queries/s up, total bytes per vector down):
a row is on it when no other row is at least as good on all three and better on one.
The summary answers the README's question: at recall@10 >= 0.90 and >= 0.95, which configuration
needs the least memory, its compression against float32 and against NGT's measured footprint (the
smallest NGT configuration reaching the same recall), and its speed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

THRESHOLDS = (0.90, 0.95)
PARETO_KEYS = (("recall@10", 1), ("qps_1thread", 1), ("total_bytes_per_vector", -1))


def pareto_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
        ge = all(a[k] * s >= b[k] * s for k, s in PARETO_KEYS)
        return ge and any(a[k] * s > b[k] * s for k, s in PARETO_KEYS)

    front = [r for r in rows if not any(dominates(o, r) for o in rows if o is not r)]
    return sorted(front, key=lambda r: (r["recall@10"], r["qps_1thread"]))


def least_memory(
    rows: list[dict[str, Any]], threshold: float, basis: str, family: str | None = None
) -> dict[str, Any] | None:
    """The row reaching ``threshold`` recall@10 with the fewest bytes per vector by ``basis``.

    ``family=None`` means any faiss index (NGT is the reference it is compared with).
    """
    ok = [r for r in rows if r["recall@10"] >= threshold and (family is None or r["family"] == family)]
    if family is None:
        ok = [r for r in ok if r["family"] != "ngt"]
    return min(ok, key=lambda r: (r[basis], -r["qps_1thread"]), default=None)


def with_scale_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``scale_bytes_per_vector``: marginal index bytes plus re-rank vectors (the cost at millions)."""
    return [
        {
            **r,
            "scale_bytes_per_vector": r["marginal_bytes_per_vector"] + r["rerank_bytes_per_vector"],
            # What must stay in RAM when re-ranking reads the float32 vectors from the store on disk.
            "ram_bytes_per_vector": r["marginal_bytes_per_vector"],
        }
        for r in rows
    ]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:,.0f}"
    return "" if value is None else str(value)


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def summary_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    rows = with_scale_columns(rows)
    qps_all = next(k for k in rows[0] if k.startswith("qps_") and k != "qps_1thread")
    cols = ["config", "recall@1", "recall@10", "qps_1thread", qps_all, "train_s", "build_s"]
    cols += ["bytes_per_vector", "marginal_bytes_per_vector", "total_bytes_per_vector", "compression_vs_float32"]
    out = [
        f"# faiss PQ vs exact search vs NGT on {meta['source']}",
        "",
        f"{meta['n_base']:,} base vectors of {meta['dim']} dimensions, {meta['n_queries']:,} held-out queries, "
        f"k={meta['k']}; {meta['cores']} cores; 1-minute load average {meta['load_average_at_start'][0]:.1f} at the "
        f"start and {meta['load_average_at_end'][0]:.1f} at the end (above ~1, other work shared the cores and "
        "the timings are slower and noisier than on an idle machine). Queries/s are medians of "
        f"{meta['config'].get('run', {}).get('repeats', 3)} passes. Memory: index B/vector is the "
        "serialised faiss index (NGT: its index files, which it loads whole) over the base size; "
        "marginal B/vector leaves out "
        "the fixed part (codebooks, centroids, OPQ matrix), which vanishes at millions of vectors; re-ranking "
        "configurations also read the float32 vectors (4 x dim B, counted in total/scale, though they can stay "
        "in the store on disk). 'this n' counts index + re-rank bytes at this base size, 'per added vector' "
        "counts marginal + re-rank bytes, 'in RAM' counts marginal bytes only (re-ranking reads the float32 "
        "vectors from the vector store on disk, as a service that already stores them would).",
        "",
        "## Least memory at a recall target",
        "",
        "| recall@10 >= | memory counted | configuration | recall@10 | index B/vector | marginal B/vector "
        "| counted B/vector (+ re-rank vectors) | x vs float32 | NGT config (least memory at target) "
        "| NGT B/vector (index files, loaded whole) | x vs NGT | queries/s (1 thread) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in THRESHOLDS:
        for basis in ("total_bytes_per_vector", "scale_bytes_per_vector", "ram_bytes_per_vector"):
            best, ngt = least_memory(rows, t, basis), least_memory(rows, t, basis, "ngt")
            label = {"total": "this n", "scale": "per added vector", "ram": "in RAM"}[basis.split("_")[0]]
            if best is None:
                out.append(f"| {t:.2f} | {label} | none reaches it |" + " |" * 9)
                continue
            ngt_bytes = ngt[basis] if ngt else None
            ratio = f"{ngt_bytes / best[basis]:.1f}" if ngt_bytes else "no NGT row reaches it"
            out.append(
                f"| {t:.2f} | {label} | {best['config']} | {best['recall@10']:.3f} | {best['bytes_per_vector']:.1f} "
                f"| {best['marginal_bytes_per_vector']:.1f} | {best[basis]:.1f} | {4 * best['dim'] / best[basis]:.1f} "
                f"| {ngt['config'] if ngt else ''} | {_fmt(ngt_bytes)} | {ratio} | {best['qps_1thread']:,.0f} |"
            )
    out += ["", "## Pareto front (recall@10, queries/s, bytes per vector)", ""]
    out += [markdown_table(pareto_front(rows), cols), ""]
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], x: str, y: str, path: Path, log_y: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for family in sorted({r["family"] for r in rows}):
        pts = sorted((r[x], r[y]) for r in rows if r["family"] == family)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", label=family, alpha=0.8)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if log_y:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_report(rows: list[dict[str, Any]], meta: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / "rows.json", json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    columns = list(dict.fromkeys(k for r in rows for k in r))
    tmp = out / "rows.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(out / "rows.csv")
    summary = summary_markdown(rows, meta)
    _write_text(out / "summary.md", summary)
    plot(rows, "recall@10", "qps_1thread", out / "recall_vs_qps.png", log_y=True)
    plot(rows, "recall@10", "total_bytes_per_vector", out / "recall_vs_bytes.png", log_y=True)
    print(summary)  # the table on the terminal, as for every benchmark
