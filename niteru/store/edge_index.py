"""Build the HNSW index of one Edge shard folder, in a process of its own.

    python -m niteru.store.edge_index <shard folder>

Run by ``EdgeShards.build_index`` on a copy of a live shard: Edge's ``optimize`` holds the GIL until it
is done, so run inside the serving process it would stop every query for the whole build.
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m niteru.store.edge_index <shard folder>", file=sys.stderr)
        return 2
    import qdrant_edge as qe

    t0 = time.perf_counter()
    shard = qe.EdgeShard.load(argv[0])
    try:
        changed = shard.optimize()
        shard.flush()
        print(f"optimized={changed} in {time.perf_counter() - t0:.1f} s: {shard.info()}")
    finally:
        shard.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
