"""The daily rebuild with and without the joint model, side by side (issue 17: under 3 minutes for catalog-dev).

Runs ``niteru rebuild`` as a subprocess on one data folder (``NITERU_DATA_DIR``, a copy of an ingested
catalog-dev: never the shared one), alternating ``NITERU_JOINT_ENABLED=false`` (the rebuild as it was: text
model, classifier, copy) and ``true`` (the same plus training the joint model and computing the vector),
``--runs`` times each. Each rebuild rebuilds from the live collection the previous one left; the products
are the same. Prints and writes bench/results/rebuild_joint.md with the medians and the load average.

    NITERU_DATA_DIR=/work/data-x .venv/bin/python bench/rebuild_joint.py --runs 2

On a machine whose load swings, two whole rebuilds minutes apart are not comparable; ``--steps`` times, in
one process and alternately, what the joint model adds (``niteru.joint.train_for_rebuild``: re-shot photos,
re-written titles, training, in a fresh interpreter so TensorFlow's import counts) beside the step of the
rebuild it is closest to in size, embedding every text with the text model. Writes
bench/results/rebuild_joint_steps.md. It saves the joint model it trains under the live text model's version,
which that store's collection has no vector for: run it on a scratch copy only, never on a store in use.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
BUDGET_S = 180


def one(joint: bool) -> float:
    env = {**os.environ, "NITERU_JOINT_ENABLED": "true" if joint else "false"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cli.main", "rebuild"], env=env, check=True, cwd=REPO)
    return time.perf_counter() - started


def steps(runs: int, out: Path) -> None:
    code = """
import json, sys, time
t0 = time.perf_counter()
from embedding.text import TextEmbedder
from niteru.joint import train_for_rebuild
from niteru.model_config import text_config
from niteru.settings import get_settings
from niteru.store import open_store
settings = get_settings()
with open_store(settings) as store:
    points = [p for b in store.scroll(batch_size=512) for p in b]
text = TextEmbedder(text_config(settings)).load()
t1 = time.perf_counter()
vectors = text.embed([p.product.text for p in points])
t2 = time.perf_counter()
if sys.argv[1] == "joint":
    train_for_rebuild(points, vectors, text, settings)
t3 = time.perf_counter()
print(json.dumps({"embed_texts": t2 - t1, "joint": t3 - t2, "products": len(points)}))
"""
    rows: dict[str, list[float]] = {"embed_texts": [], "joint": []}
    loads = [os.getloadavg()[0]]
    products = 0
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", code, "joint"], env=os.environ, check=True, cwd=REPO, capture_output=True, text=True
        )
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        products = figures["products"]
        for key in rows:
            rows[key].append(figures[key])
        loads.append(os.getloadavg()[0])
        print(figures, f"load {loads[-1]:.1f}", flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    lines = [
        "# What the joint model adds to the rebuild",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
        f"1-minute load average before and after each run: {', '.join(f'{x:.1f}' for x in loads)} (the machine "
        "is shared: absolute times are noisy, the two steps of one run are measured back to back).",
        "",
        f"`NITERU_DATA_DIR={os.environ['NITERU_DATA_DIR']} .venv/bin/python bench/rebuild_joint.py --steps "
        f"--runs {runs}`, {products} products",
        "",
        "| step | runs (s) | median (s) |",
        "|---|---|---:|",
        f"| embed every text (a step the rebuild had already) | {', '.join(f'{t:.1f}' for t in rows['embed_texts'])} "
        f"| {med['embed_texts']:.1f} |",
        f"| joint model: re-shoot, re-write, train, save (new) | {', '.join(f'{t:.1f}' for t in rows['joint'])} "
        f"| {med['joint']:.1f} |",
    ]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--steps", action="store_true", help="time the joint step alone (see above)")
    args = parser.parse_args()
    if "NITERU_DATA_DIR" not in os.environ:
        sys.exit("set NITERU_DATA_DIR to a copy of an ingested store (the rebuild rewrites it)")
    if args.steps:
        steps(args.runs, args.out or RESULTS / "rebuild_joint_steps.md")
        return
    args.out = args.out or RESULTS / "rebuild_joint.md"
    times: dict[bool, list[float]] = {False: [], True: []}
    loads = [os.getloadavg()[0]]
    for _ in range(args.runs):
        for joint in (False, True):
            times[joint].append(one(joint))
            loads.append(os.getloadavg()[0])
            print(f"joint={joint}: {times[joint][-1]:.1f} s (load {loads[-1]:.1f})", flush=True)
    med = {j: statistics.median(t) for j, t in times.items()}
    lines = [
        "# The rebuild with and without the joint model",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
        f"1-minute load average before and after each run: {', '.join(f'{x:.1f}' for x in loads)}. "
        "The machine is shared with other work, so absolute times are noisy; the two ways ran alternately in one "
        "session, and their ratio is what counts.",
        "",
        f"`NITERU_DATA_DIR={os.environ['NITERU_DATA_DIR']} .venv/bin/python bench/rebuild_joint.py --runs {args.runs}`",
        "",
        "| rebuild | runs (s) | median (s) |",
        "|---|---|---:|",
        f"| without joint (as before) | {', '.join(f'{t:.0f}' for t in times[False])} | {med[False]:.0f} |",
        f"| with joint (train + vectors) | {', '.join(f'{t:.0f}' for t in times[True])} | {med[True]:.0f} |",
        "",
        f"Ratio with/without: {med[True] / med[False]:.2f}; the joint model adds {med[True] - med[False]:.0f} s. "
        f"Budget: {BUDGET_S} s for the whole rebuild.",
    ]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
