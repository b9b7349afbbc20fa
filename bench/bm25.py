"""Qdrant's BM25 sparse vectors over titles as a lexical signal beside SCDV (issue #17): alone, and fused
with the routed dense result, on the queries and measures of bench/relevance.py.

1. The store of ``NITERU_DATA_DIR`` (ingested and rebuilt: image, text, joint vectors, fitted routes) is read
   whole; the queries are bench/relevance.py's (``split`` + ``sample_queries``, outside the routing fit's
   validation split), and each is re-listed as a variant (``niteru.evaluation.make_variants``: re-shot photo,
   re-written title) embedded by the store's own models.
2. Every stored product's title (and, as a second index, title + description) becomes a BM25 document
   vector (``qdrant_edge.Bm25``) in a real Edge shard, sparse named vector with the IDF modifier
   (``niteru.lexical.Bm25Index``). A query product searches with its own title (itself excluded by id), its
   variant with the re-written title.
3. The dense lists come from ``similar_products`` / ``similar_to_vectors`` (the API's code path) in text-only
   mode (SCDV) and routed by the fitted table. Fused configurations combine the routed list with the BM25
   list (both ``prefetch_size(10)`` deep) by Qdrant's own rules as the Edge engine applies them
   (``niteru.store.local_fusion``): RRF, weighted RRF with the BM25 list at a lower weight, DBSF. That is a
   fusion of the routed result with BM25, an approximation of BM25 as a fourth input of the fitted
   routing (which would weigh it beside image, text and joint inside one fusion).
4. Measures: ``niteru.evaluation.outcome`` / ``measures`` (precision@10 same subcategory, variant recall@1
   and @10, colour and brand kept), per category; latency per search.

Writes bench/results/bm25.md; anything below the ``<!-- reading -->`` line of an existing file is kept.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from relevance import sample_queries, split  # noqa: E402  (bench/ is on sys.path when run as a script)

from niteru.embedders import load_embedders  # noqa: E402
from niteru.evaluation import MEASURES, QueryOutcome, Variant, embed_variants, make_variants, measures, outcome  # noqa: E402
from niteru.fetch import read_image_path  # noqa: E402
from niteru.fusion import Rrf  # noqa: E402
from niteru.lexical import Bm25Index  # noqa: E402
from niteru.products import Product  # noqa: E402
from niteru.route_grid import in_validation  # noqa: E402
from niteru.route_table import load_route_table  # noqa: E402
from niteru.routing import Mode  # noqa: E402
from niteru.settings import get_settings  # noqa: E402
from niteru.similar import QueryProduct, SimilarOptions, similar_products, similar_to_vectors  # noqa: E402
from niteru.store import ProductPoint, open_store  # noqa: E402
from niteru.store.local_fusion import dbsf_fuse, rrf_fuse  # noqa: E402
from niteru.store.plan import prefetch_size  # noqa: E402

RESULTS = REPO / "bench" / "results"
K = 10
DEPTH = prefetch_size(K)  # what each vector of a fused query brings (50)
MARK = "<!-- reading -->"
# BM25 scores of titles run from about 3 to 30 against cosines and fused scores below 1: these weights make
# the bonus of a full title match about 0.01, 0.03 and 0.1.
FORMULA_WEIGHTS = (0.001, 0.003, 0.01)
Ranked = list[tuple[str, float]]  # (product id, score), best first


@dataclass
class Lists:
    """One configuration's ranked lists: of each query's stored product and of its variant (by query id),
    and the wall time of its searches."""

    stored: dict[str, Ranked]
    variant: dict[str, Ranked]
    ms: list[float]  # each search's wall time

    @property
    def median_ms(self) -> float:
        return float(np.median(self.ms)) if self.ms else 0.0


def dense_lists(
    store: Any, settings: Any, variants: Sequence[Variant], embedded: dict[str, ProductPoint], mode: Mode, k: int
) -> Lists:
    fitted = load_route_table(settings, store.current_version())
    opts = SimilarOptions(k=k, mode=mode)
    stored, variant, ms = {}, {}, []
    for v in tqdm(variants, desc=f"{mode.value} k={k}", leave=False):
        pid = v.original.product_id
        started = time.perf_counter()
        result = similar_products(store, pid, settings, opts, None, fitted)
        ms.append(1000 * (time.perf_counter() - started))
        stored[pid] = [(h.product.product_id, h.score) for h in result.hits]
        query = QueryProduct(embedded[pid].vectors, v.fields.category, v.fields.shop_id, title=v.fields.title)
        started = time.perf_counter()
        answer = similar_to_vectors(store, query, settings, opts, None, fitted)
        ms.append(1000 * (time.perf_counter() - started))
        variant[pid] = [(h.product.product_id, h.score) for h in answer.hits]
    return Lists(stored, variant, ms)


def bm25_lists(
    index: Bm25Index, ids: list[str], variants: Sequence[Variant], k: int, text: Callable[[Any], str]
) -> Lists:
    """``text``: what of a product (or of a variant's fields) is the query (the index holds the same part)."""
    number = {pid: i for i, pid in enumerate(ids)}
    stored, variant, ms = {}, {}, []
    for v in tqdm(variants, desc="bm25", leave=False):
        pid = v.original.product_id
        started = time.perf_counter()  # the query's embedding (tokenizer pipeline) is part of the search
        stored[pid] = [(ids[i], s) for i, s in index.search(text(v.original), k, exclude=[number[pid]])]
        ms.append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        variant[pid] = [(ids[i], s) for i, s in index.search(text(v.fields), k)]
        ms.append(1000 * (time.perf_counter() - started))
    return Lists(stored, variant, ms)


def fuse(dense: Ranked, lexical: Ranked, rule: str, bm25_weight: float, rrf_k: int) -> Ranked:
    """The two lists fused by one of Qdrant's rules (the routed list has weight 1). ``formula``: each
    routed candidate's score plus ``bm25_weight`` times its BM25 score (0 outside the BM25 list), what a
    formula query ``$score[0] + w * $score[1]`` with default 0 computes; a BM25-only candidate would get
    the routed default 0 and never reach the top, so it is left out."""
    if rule == "formula":
        bonus = dict(lexical)
        return sorted(((i, s + bm25_weight * bonus.get(i, 0.0)) for i, s in dense), key=lambda kv: -kv[1])
    if rule == "dbsf":
        scores = dbsf_fuse([dense, lexical])
    else:
        scores = rrf_fuse([dense, lexical], Rrf(rrf_k, (1.0, bm25_weight)))
    return sorted(scores.items(), key=lambda kv: -kv[1])


def fused_lists(dense: Lists, lexical: Lists, rule: str, w: float, rrf_k: int, cost: Lists) -> Lists:
    """Each search's time: ``cost``'s (the routed search as served, k = 10: its vectors already bring 50
    candidates each, as one more BM25 prefetch would) plus the lexical one's, one after the other, plus the
    fusion's (the lists keep the searches' order: each query's stored product, then its variant)."""
    stored: dict[str, Ranked] = {}
    variant: dict[str, Ranked] = {}
    ms: list[float] = []
    for q in dense.stored:
        for mine, a, b in ((stored, dense.stored, lexical.stored), (variant, dense.variant, lexical.variant)):
            started = time.perf_counter()
            mine[q] = fuse(a[q], b[q], rule, w, rrf_k)
            n = len(ms)
            ms.append(cost.ms[n] + lexical.ms[n] + 1000 * (time.perf_counter() - started))
    return Lists(stored, variant, ms)


def outcomes(lists: Lists, variants: Sequence[Variant], products: dict[str, Product]) -> list[QueryOutcome]:
    out = []
    for v in variants:
        q = v.original
        results = [products[pid] for pid, _ in lists.stored[q.product_id][:K]]
        found = [pid for pid, _ in lists.variant[q.product_id][:K]]
        out.append(outcome(q, results, found, {}))
    return out


def title(p: Any) -> str:
    return str(p.title)


def title_description(p: Any) -> str:
    return f"{p.title}\n{p.description or ''}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "bm25.md")
    parser.add_argument(
        "--split",
        choices=("outside", "inside"),
        default="outside",
        help="queries from outside the routing fit's validation split (default) or inside it (to choose on)",
    )
    args = parser.parse_args()
    settings = get_settings()
    run_started = time.perf_counter()
    timings: dict[str, float] = {}
    store = open_store(settings)
    try:
        points = [p for batch in store.scroll(batch_size=512) for p in batch]
        points = [p for p in points if {"image", "text"} <= set(p.vectors) and not p.product.category_estimated]
        _, test = split(points, args.seed)
        inside = args.split == "inside"
        pool = [p for p in test if in_validation(p.product.product_id, settings) == inside]
        queries = sample_queries(pool, args.queries, args.seed)
        products = {p.product.product_id: p.product for p in points}
        started = time.perf_counter()
        variants = make_variants([q.product for q in queries], lambda ref: read_image_path(ref, settings), args.seed)
        embedded = embed_variants(variants, load_embedders(settings))
        variants = [v for v in variants if v.original.product_id in embedded]
        timings["variants made and embedded (s)"] = time.perf_counter() - started
        lists = {}
        for mode, name in ((Mode.text, "text only (SCDV)"), (Mode.auto, "routed (fitted)")):
            lists[name] = dense_lists(store, settings, variants, embedded, mode, K)
            lists[f"{name}, {DEPTH} deep"] = dense_lists(store, settings, variants, embedded, mode, DEPTH)
    finally:
        store.close()
    ids = [p.product.product_id for p in points]
    indexes = {}
    for name, text in (("bm25 title", title), ("bm25 title+description", title_description)):
        started = time.perf_counter()
        index = Bm25Index([text(p.product) for p in points])
        timings[f"{name}: embed + upsert {len(ids)} products (s)"] = time.perf_counter() - started
        indexes[name] = index
        lists[name] = bm25_lists(index, ids, variants, DEPTH, text)
    rrf_k = settings.rrf_k
    routed, text_only = lists[f"routed (fitted), {DEPTH} deep"], lists[f"text only (SCDV), {DEPTH} deep"]
    lexical, cost, cost_text = lists["bm25 title"], lists["routed (fitted)"], lists["text only (SCDV)"]
    fused = {
        "routed + bm25, rrf": fused_lists(routed, lexical, "rrf", 1.0, rrf_k, cost),
        "routed + bm25, wrrf 0.5": fused_lists(routed, lexical, "rrf", 0.5, rrf_k, cost),
        "routed + bm25, wrrf 0.25": fused_lists(routed, lexical, "rrf", 0.25, rrf_k, cost),
        "routed + bm25, dbsf": fused_lists(routed, lexical, "dbsf", 1.0, rrf_k, cost),
        **{
            f"routed + {w} bm25, formula": fused_lists(routed, lexical, "formula", w, rrf_k, cost)
            for w in FORMULA_WEIGHTS
        },
        "text (SCDV) + bm25, rrf": fused_lists(text_only, lexical, "rrf", 1.0, rrf_k, cost_text),
    }
    shown = ["text only (SCDV)", "routed (fitted)", "bm25 title", "bm25 title+description", *fused]
    every = {**lists, **fused}
    results = {name: outcomes(every[name], variants, products) for name in shown}
    timings["whole run (s)"] = time.perf_counter() - run_started
    facts = index_facts(indexes, len(ids))
    tops = [ranked[0][1] for ranked in lexical.stored.values() if ranked]
    p10, p50, p90 = np.percentile(tops, [10, 50, 90])
    facts.append(f"- bm25 title, best score of a query: 10th/50th/90th percentile {p10:.1f} / {p50:.1f} / {p90:.1f}")
    for index in indexes.values():
        index.close()
    where = f"{args.split} the routing fit's validation split"
    write(args.out, results, {n: every[n].median_ms for n in shown}, timings, facts, len(points), where)


def index_facts(indexes: dict[str, Bm25Index], n: int) -> list[str]:
    lines = []
    for name, index in indexes.items():
        # Blocks written, not file sizes: the engine's files are sparse, pre-sized mmaps.
        segments = sum(f.stat().st_blocks * 512 for f in (index.path / "segments").rglob("*") if f.is_file())
        everything = sum(f.stat().st_blocks * 512 for f in index.path.rglob("*") if f.is_file())
        lines.append(
            f"- {name}: avg_len {index.avg_len:.1f} terms, {index.nonzeros / n:.1f} non-zeros per product "
            f"({8 * index.nonzeros / n:.0f} B of u32 index + f32 value); shard on disk: segments "
            f"{segments / 2**20:.1f} MiB ({segments / n:.0f} B per product), with the WAL {everything / 2**20:.1f} MiB"
        )
    return lines


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def write(
    out: Path,
    results: dict[str, list[QueryOutcome]],
    ms: dict[str, float],
    timings: dict[str, float],
    facts: list[str],
    stored: int,
    where: str,
) -> None:
    names = list(results)
    cats = sorted({o.category for os_ in results.values() for o in os_})
    count = {c: sum(o.category == c for o in next(iter(results.values()))) for c in cats}
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    command = "PYTHONPATH=. python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = [
        "# BM25 sparse vectors over titles as a lexical signal (issue #17)",
        "",
        "Command: `NITERU_DATA_DIR=<a copy of the rebuilt catalog-dev store> NITERU_CATALOG_DIR=<catalog-dev> "
        f"{command}`",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"load average {load} (at the end of the run). Store: {stored} products; "
        f"{sum(count.values())} queries from {where} (bench/relevance.py's selection).",
        "",
        *facts,
        *[f"- {k}: {v:.1f}" for k, v in timings.items()],
        "",
        "Each cell: percent; `all` pools every query. ms per search: median wall time of one search, stored "
        "product's and variant's (dense: `similar_products` / `similar_to_vectors` against the Edge store; "
        "bm25: the query's embedding plus the shard query; fused: the routed (or text) search as served, k = 10, "
        "plus the bm25 one, one after the other, plus the fusion in Python; the fused rankings themselves "
        f"come from the {DEPTH}-deep lists).",
        "",
    ]
    for measure in MEASURES:
        lines += [f"## {measure}", "", "| category | queries | " + " | ".join(names) + " |"]
        lines.append("|---|---:|" + "---:|" * len(names))
        for c in [*cats, "all"]:
            row = [pct(getattr(measures([o for o in results[n] if c in ("all", o.category)]), measure)) for n in names]
            lines.append(f"| {c} | {count.get(c, sum(count.values()))} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## ms per search", "", "| " + " | ".join(names) + " |", "|" + "---:|" * len(names)]
    lines += ["| " + " | ".join(f"{ms[n]:.2f}" for n in names) + " |", ""]
    kept = out.read_text().split(MARK, 1)[1] if out.is_file() and MARK in out.read_text() else "\n"
    out.write_text("\n".join(lines) + "\n" + MARK + kept)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
