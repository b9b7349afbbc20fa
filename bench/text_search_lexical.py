"""Search by text with and without the BM25 title bonus (``/v1/search/text``), on the store of
``NITERU_DATA_DIR`` (a rebuilt catalog: its text model and its collection's lexical vector).

Queries, from products outside the routing fit's validation split (shop-given category, a subcategory;
``--queries``, seeded):

- **re-written title**: the product's title as another shop would list it (``lookalike.variant_fields``:
  brand dropped, words shuffled); the look-alike measure is recall@1 of the product itself, the label
  measure precision@10 of its subcategory among the other results;
- **first words**: the title's first three words, as a shopper types; precision@10 of its subcategory.

Each query searches the store as the service does (``ProductStore.search``: the text vector, weight 1,
and the ``lexical`` weight with the query as the title), once per weight of ``--weights``. Writes
bench/results/text_search_lexical.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from niteru.embedders import load_embedders  # noqa: E402
from niteru.lexical import VECTOR  # noqa: E402
from niteru.lookalike import variant_fields  # noqa: E402
from niteru.products import ProductFields  # noqa: E402
from niteru.route_grid import in_validation  # noqa: E402
from niteru.settings import get_settings  # noqa: E402
from niteru.store import open_store  # noqa: E402

OUT = REPO / "bench" / "results" / "text_search_lexical.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=800)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.005, 0.01, 0.02, 0.04])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = get_settings()
    load_before = os.getloadavg()
    store = open_store(settings)
    try:
        text = load_embedders(settings).text
        points = [p for batch in store.scroll(batch_size=1024) for p in batch]
        pool = [
            p.product
            for p in points
            if p.product.subcategory
            and not p.product.category_estimated
            and not in_validation(p.product.product_id, settings)
        ]
        rng = np.random.default_rng(args.seed)
        chosen = [pool[i] for i in sorted(rng.choice(len(pool), min(args.queries, len(pool)), replace=False))]
        kinds = {
            "re-written title": [
                variant_fields(p.product_id, ProductFields.taken_from(p), args.seed).title for p in chosen
            ],
            "first words": [" ".join(p.title.split()[:3]) for p in chosen],
        }
        # (kind, weight, category) -> [recall@1 hits, precision@10 sum, queries]
        found: dict[tuple[str, float, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for kind, texts in kinds.items():
            vectors = text.embed(texts)
            for w in args.weights:
                for product, query, vector in zip(chosen, texts, vectors, strict=True):
                    if not np.any(vector):
                        continue
                    hits = store.search({"text": vector}, {"text": 1.0, VECTOR: w}, 11, title=query)
                    itself = bool(hits) and hits[0].product.product_id == product.product_id
                    others = [h for h in hits if h.product.product_id != product.product_id][:10]
                    same = sum(h.product.subcategory == product.subcategory for h in others) / 10
                    for category in (product.category, "all"):
                        cell = found[(kind, w, category)]
                        cell[0] += itself
                        cell[1] += same
                        cell[2] += 1
    finally:
        store.close()
    write(args, found, kinds, load_before)


def write(
    args: argparse.Namespace,
    found: dict[tuple[str, float, str], list[float]],
    kinds: dict[str, list[str]],
    load_before: tuple[float, float, float],
) -> None:
    loads = [", ".join(f"{x:.2f}" for x in one) for one in (load_before, os.getloadavg())]
    categories = [*sorted({c for _, _, c in found} - {"all"}), "all"]
    lines = [
        "# Search by text with the BM25 title bonus",
        "",
        f"Command: `NITERU_DATA_DIR=<a rebuilt store> PYTHONPATH=. python bench/text_search_lexical.py "
        f"{' '.join(sys.argv[1:])}`",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; load average "
        f"{loads[0]} before, {loads[1]} after. Store: {get_settings().data_dir.name}; "
        f"{len(next(iter(kinds.values())))} queries outside the routing fit's split. Each cell: the "
        "re-written title's recall@1 of its product / precision@10 of its subcategory (the product left out); "
        "first words: precision@10.",
        "",
        "| category | queries | "
        + " | ".join(f"lexical {w:g}: re-written r@1 / p@10; first words p@10" for w in args.weights)
        + " |",
        "|---|---:|" + "---|" * len(args.weights),
    ]
    for c in categories:
        n = found[("re-written title", args.weights[0], c)][2]
        cells = []
        for w in args.weights:
            r = found[("re-written title", w, c)]
            f = found[("first words", w, c)]
            cells.append(
                f"{100 * r[0] / max(r[2], 1):.1f} / {100 * r[1] / max(r[2], 1):.1f}; {100 * f[1] / max(f[2], 1):.1f}"
            )
        lines.append(f"| {c} | {int(n)} | " + " | ".join(cells) + " |")
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
