"""The lifetime of open Edge shard objects: a replaced shard is closed by the last call still using it.

An index build replaces a version's shard object by the indexed copy. Reads take no store lock, so a read
may have picked up the old object just before the swap; and Edge may release the GIL inside a long call.
Each call on a shard therefore holds a lease on the object it runs on; ``replace`` and ``retire`` close
the object at once when no call holds it, else the last lease closes it (and removes its folder).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ShardLeases:
    def __init__(self, load: Callable[[str], Any]) -> None:
        self._load = load  # opens a version's shard object (under the store's lock)
        self._lock = threading.Lock()  # held only to count: reads never wait on writes or builds
        self.open: dict[str, Any] = {}
        self._busy: dict[int, int] = {}
        self._retired: dict[int, tuple[Any, Path | None]] = {}

    @contextlib.contextmanager
    def leased(self, version: str) -> Iterator[Any]:
        """The version's current shard object, kept open until the block ends."""
        while True:
            with self._lock:
                shard = self.open.get(version)
                if shard is not None:
                    self._busy[id(shard)] = self._busy.get(id(shard), 0) + 1
                    break
            self._load(version)
        try:
            yield shard
        finally:
            self._release(shard)

    def _release(self, shard: Any) -> None:
        with self._lock:
            left = self._busy[id(shard)] - 1
            if left:
                self._busy[id(shard)] = left
                return
            del self._busy[id(shard)]
            retired = self._retired.pop(id(shard), None)
        if retired is not None:
            _close(*retired)

    def replace(self, version: str, fresh: Any, old_folder: Path | None) -> None:
        """``fresh`` serves ``version`` from now on; the old object closes (and ``old_folder`` goes) once
        no call holds it."""
        with self._lock:
            old = self.open.get(version)
            self.open[version] = fresh
            if old is None:
                return
            if self._busy.get(id(old)):
                self._retired[id(old)] = (old, old_folder)
                return
        _close(old, old_folder)

    def retire(self, version: str, folder: Path | None) -> None:
        """``version`` is dropped: its object closes (and ``folder`` goes) once no call holds it."""
        with self._lock:
            old = self.open.pop(version, None)
            if old is not None and self._busy.get(id(old)):
                self._retired[id(old)] = (old, folder)
                return
        _close(old, folder)

    def close_all(self) -> None:
        """The store closes: every object, leased or not (the store's owner has stopped using it)."""
        with self._lock:
            shards = [*self.open.values(), *(s for s, _ in self._retired.values())]
            folders = [f for _, f in self._retired.values()]
            self.open.clear()
            self._retired.clear()
            self._busy.clear()
        for shard in shards:
            _close(shard, None)
        for folder in folders:
            _close(None, folder)


class ShardHandle:
    """What ``EdgeShards.get`` hands out: every method call runs on the version's shard object of that
    moment under a lease, so a handle taken before a swap still works after it."""

    def __init__(self, leases: ShardLeases, version: str) -> None:
        self._leases = leases
        self._version = version

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            with self._leases.leased(self._version) as shard:
                return getattr(shard, name)(*args, **kwargs)

        return call


def _close(shard: Any, folder: Path | None) -> None:
    if shard is not None:
        with contextlib.suppress(Exception):  # already closed (the store closed meanwhile)
            shard.close()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
