"""The daily rebuild with and without the joint model, side by side (issue 17: under 3 minutes for catalog-dev).

Runs ``niteru rebuild`` as a subprocess on one data folder (``NITERU_DATA_DIR``, a copy of an ingested
catalog-dev: never the shared one), alternating ``NITERU_JOINT_ENABLED=false`` (the rebuild as it was: text
model, classifier, copy) and ``true`` (the same plus training the joint model and computing the vector),
``--runs`` times each. Each rebuild rebuilds from the live collection the previous one left; the products
are the same. Prints and writes bench/results/rebuild_joint.md with the medians and the load average.

    NITERU_DATA_DIR=/work/data-x .venv/bin/python bench/rebuild_joint.py --runs 2
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "rebuild_joint.md")
    args = parser.parse_args()
    if "NITERU_DATA_DIR" not in os.environ:
        sys.exit("set NITERU_DATA_DIR to a copy of an ingested store (the rebuild rewrites it)")
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
