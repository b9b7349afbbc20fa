"""The rebuild's gate: how long it takes on a store, and what embedding the variants' photos once saves.

On the store of ``NITERU_DATA_DIR`` (ingest it first), the gate measures the live collection against itself
(both sides with the current text model: the decision is always a swap, the time is what counts). Two ways,
alternated, ``--runs`` times each:

- ``twice``: each side embeds the variants (photo and title) with ``embed_products``;
- ``once``: the live side embeds them, the new side re-embeds only the titles (``reembed_text``), what
  ``niteru.gate`` does.

Prints and writes bench/results/rebuild_gate.md: wall and CPU seconds (medians) of the whole gate and of
its parts, the load average before and after. Needs ``NITERU_CATALOG_DIR`` pointing at the catalog.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from niteru.embedders import Embedders, load_embedders  # noqa: E402
from niteru.evaluation import embed_variants, evaluate, fixed_sample, make_variants, reembed_variants  # noqa: E402
from niteru.fetch import read_image_path  # noqa: E402
from niteru.settings import get_settings  # noqa: E402
from niteru.store import open_store  # noqa: E402

RESULTS = REPO / "bench" / "results"


def clocks() -> tuple[float, float]:
    t = os.times()
    return time.perf_counter(), t.user + t.system


def one_gate(store: Any, settings: Any, embedders: Embedders, way: str) -> dict[str, float]:
    """The gate's work (sample, variants, embedding, both sides' queries), timed by part."""
    parts: dict[str, float] = {}
    cpu: dict[str, float] = {}
    w0, c0 = clocks()
    products = [p.product for batch in store.scroll(batch_size=1024, with_vectors=False) for p in batch]
    sample = fixed_sample(products, settings.rebuild_gate_sample, settings.rebuild_gate_seed)
    variants = make_variants(sample, lambda ref: read_image_path(ref, settings), settings.rebuild_gate_seed)
    w1, c1 = clocks()
    live = embed_variants(variants, embedders)
    new = embed_variants(variants, embedders) if way == "twice" else reembed_variants(live, embedders)
    w2, c2 = clocks()
    for side in (live, new):
        evaluate(store, settings, variants, side)
    w3, c3 = clocks()
    parts.update(sample=w1 - w0, embed=w2 - w1, queries=w3 - w2, total=w3 - w0)
    cpu.update(sample=c1 - c0, embed=c2 - c1, queries=c3 - c2, total=c3 - c0)
    return {**{f"wall_{k}": v for k, v in parts.items()}, **{f"cpu_{k}": v for k, v in cpu.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "rebuild_gate.md")
    args = parser.parse_args()
    settings = get_settings()
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, float]]] = {"twice": [], "once": []}
    with open_store(settings) as store:
        embedders = load_embedders(settings)
        for _ in range(args.runs):
            for way in runs:  # alternated, so both ways see the same load on average
                runs[way].append(one_gate(store, settings, embedders, way))
                print(way, {k: round(v, 1) for k, v in runs[way][-1].items()}, flush=True)
    load_after = os.getloadavg()
    keys = list(runs["once"][0])
    med = {way: {k: statistics.median(r[k] for r in rs) for k in keys} for way, rs in runs.items()}
    lines = [
        f"The rebuild's gate on {settings.rebuild_gate_sample} sample products (`bench/rebuild_gate.py --runs "
        f"{args.runs}`), medians of {args.runs} runs per way, alternated. Load average before "
        f"{', '.join(f'{x:.1f}' for x in load_before)}, after {', '.join(f'{x:.1f}' for x in load_after)} on "
        f"{os.cpu_count()} cores shared with other jobs: absolute seconds are noisy, the ratio side by side is "
        "what counts. CPU = user + system seconds of this process (less sensitive to the load than wall time).",
        "",
        "| way | wall total | CPU total | CPU sample+variants | CPU embedding | CPU queries (both sides) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for way, m in med.items():
        lines.append(
            f"| {way} | {m['wall_total']:.1f} | {m['cpu_total']:.1f} | {m['cpu_sample']:.1f} | "
            f"{m['cpu_embed']:.1f} | {m['cpu_queries']:.1f} |"
        )
    ratio = med["twice"]["cpu_total"] / med["once"]["cpu_total"]
    lines += ["", f"CPU time, twice / once: {ratio:.2f}."]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
