"""Build the HNSW index of one Edge shard folder, in a process of its own.

    python -m niteru.store.edge_index <shard folder> [<parent pid>]

Run by ``EdgeShards.build_index`` on a copy of a live shard: Edge's ``optimize`` holds the GIL until it
is done, so run inside the serving process it would stop every query for the whole build. Given the
parent's pid, it asks the kernel to kill it when the parent dies (Linux), and exits if the parent is
already gone: a crashed server leaves no build running on a copy nobody will use.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1


def die_with(parent: int) -> bool:
    """Be killed when ``parent`` dies; False when it already has (this process was re-parented)."""
    # The signal comes when the parent's forking thread ends: the build thread, which waits for this
    # process, so in practice when the parent process dies.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return os.getppid() == parent


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: python -m niteru.store.edge_index <shard folder> [<parent pid>]", file=sys.stderr)
        return 2
    if len(argv) == 2 and not die_with(int(argv[1])):
        print("the parent process is gone", file=sys.stderr)
        return 3
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
