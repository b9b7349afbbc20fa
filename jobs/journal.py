"""The inline executor's tasks on disk: what was accepted survives the process.

One SQLite file in the data folder (``data_dir/tasks/inline.sqlite3``), one row per task: its name, its
(stamped) keyword arguments, its state, its retry count and when it is next due (wall-clock seconds, so
a due time means the same after a restart). Every change is committed with ``synchronous=FULL`` before
the caller goes on: ``POST /v1/tasks`` answers 202 only once the row is on disk.

Finished rows are kept for ``GET /v1/tasks/{id}`` and pruned oldest first beyond a limit; rows of tasks
that have not finished are never pruned.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FINISHED = ("succeeded", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT UNIQUE NOT NULL,
    name TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    error TEXT,
    retries INTEGER NOT NULL DEFAULT 0,
    due REAL NOT NULL,
    finished INTEGER
)
"""


@dataclass
class Row:
    task_id: str
    name: str
    kwargs: dict[str, Any]
    status: str
    result: dict[str, Any] | None
    error: str | None
    retries: int
    due: float


class TaskJournal:
    """Not thread-safe on its own: the executor calls it under its lock."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is fsynced (WAL and its directory entry) before it returns.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._db.execute("CREATE INDEX IF NOT EXISTS tasks_finished ON tasks(finished)")
        self._finish_seq = self._max_finished()

    def _max_finished(self) -> int:
        row = self._db.execute("SELECT MAX(finished) FROM tasks").fetchone()
        return int(row[0] or 0)

    def add(self, task_id: str, name: str, kwargs: dict[str, Any], due: float) -> None:
        self._db.execute(
            "INSERT INTO tasks (task_id, name, kwargs, status, due) VALUES (?, ?, ?, 'queued', ?)",
            (task_id, name, json.dumps(kwargs), due),
        )

    def update(
        self,
        task_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        retries: int = 0,
        due: float | None = None,
    ) -> None:
        finished = None
        if status in FINISHED:
            self._finish_seq += 1
            finished = self._finish_seq
        self._db.execute(
            "UPDATE tasks SET status = ?, result = ?, error = ?, retries = ?, due = COALESCE(?, due), finished = ? "
            "WHERE task_id = ?",
            (status, None if result is None else json.dumps(result), error, retries, due, finished, task_id),
        )

    def unfinished(self) -> list[Row]:
        """Tasks to run again after a restart, in the order they were accepted."""
        return self._rows("WHERE finished IS NULL ORDER BY seq")

    def finished(self, keep: int) -> list[Row]:
        """The last ``keep`` finished tasks, oldest first."""
        return self._rows("WHERE finished IS NOT NULL ORDER BY finished DESC LIMIT ?", (keep,))[::-1]

    def count_unfinished(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM tasks WHERE finished IS NULL").fetchone()[0])

    def prune(self, keep: int) -> None:
        """Drop finished rows beyond the newest ``keep``."""
        self._db.execute("DELETE FROM tasks WHERE finished IS NOT NULL AND finished <= ?", (self._finish_seq - keep,))

    def close(self) -> None:
        self._db.close()

    def _rows(self, where: str, params: tuple[Any, ...] = ()) -> list[Row]:
        cursor = self._db.execute(
            f"SELECT task_id, name, kwargs, status, result, error, retries, due FROM tasks {where}", params
        )
        return [
            Row(tid, name, json.loads(kw), status, None if res is None else json.loads(res), err, retries, due)
            for tid, name, kw, status, res, err, retries, due in cursor.fetchall()
        ]
