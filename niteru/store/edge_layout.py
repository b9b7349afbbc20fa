"""The Edge store's folder: one Edge shard per versioned collection, a state file, and the owner lock.

    <store_path>/
        OWNER           flock held by the one process that owns the store (its pid and command inside)
        state.json      {"aliases": {alias: version}, "dirs": {version: shard folder}}
        <version>.<n>/  an Edge shard; n grows each time the index is rebuilt on a copy (edge_index.py)

Qdrant Edge has no collections and no aliases (one shard is one dataset), so the alias and its atomic
switch live here: ``state.json`` is rewritten whole (temp file, fsync, rename), so a reader sees the old
or the new state, never half of one. It is read when the store opens and changed only by the owner.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from niteru.store.records import StoreUnavailableError

STATE = "state.json"
OWNER = "OWNER"


@dataclass
class EdgeState:
    aliases: dict[str, str] = field(default_factory=dict)
    dirs: dict[str, str] = field(default_factory=dict)


def read_state(root: Path) -> EdgeState:
    path = root / STATE
    if not path.is_file():
        return EdgeState()
    raw = json.loads(path.read_text())
    return EdgeState(dict(raw.get("aliases", {})), dict(raw.get("dirs", {})))


def write_state(root: Path, state: EdgeState) -> None:
    """Replace the state file atomically (and durably: the rename is fsynced with its folder)."""
    tmp = root / f".{STATE}.tmp"
    with tmp.open("w") as f:
        json.dump({"aliases": state.aliases, "dirs": state.dirs}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(root / STATE)
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Every file and folder under ``folder`` on disk (a shard copy, before the state file names it)."""
    for path, _, files in os.walk(folder):
        for name in [*files, "."]:
            fd = os.open(os.path.join(path, name), os.O_RDONLY)  # noqa: PTH118 (os.walk gives str)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


SHARD_DIR = re.compile(r".+\.\d+")


def remove_orphans(root: Path, state: EdgeState) -> list[str]:
    """Remove shard folders the state file does not name: copies an index build left when its process
    died before the swap, or a collection created just before a crash. Only the owner calls this."""
    live = set(state.dirs.values())
    removed = []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if entry.is_dir() and SHARD_DIR.fullmatch(entry.name) and entry.name not in live:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def disk_bytes(root: Path) -> int:
    """Bytes of the files under ``root``; an index build creates and removes files as this walks."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(folder, name)).st_size  # noqa: PTH116, PTH118 (os.walk gives str)
    return total


def next_dir(root: Path, version: str, current: str | None) -> str:
    """A fresh shard folder name for ``version`` (``<version>.<n+1>``)."""
    n = int(current.rsplit(".", 1)[1]) + 1 if current else 1
    while (root / f"{version}.{n}").exists():
        n += 1
    return f"{version}.{n}"


class OwnerLock:
    """The store admits one process: Edge locks each shard's write-ahead log, and a second process would
    fail on the first shard it opens with "Can't init WAL: WouldBlock". This lock is taken first, on the
    whole folder, so the second process fails at once and is told who owns the store and what to do."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fd: int | None = None

    def acquire(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / OWNER, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreUnavailableError(
                f"the embedded store {self.root} is in use by another process ({holder}). Qdrant Edge runs inside "
                "one process, which owns the store: run the API as ONE process (`niteru serve`, uvicorn without "
                "--workers, or --workers 1) and let it run the jobs (inline executor), stop it before "
                "`niteru ingest`/`niteru rebuild`, or move to a Qdrant server (NITERU_QDRANT_URL, "
                "`niteru store migrate`) to run several processes"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor frees the flock
            self._fd = None
