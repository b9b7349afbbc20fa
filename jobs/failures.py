"""Permanent task failures, where an operator can list them (``niteru jobs failures``).

A task that will never succeed (a corrupt image, a 404, an unknown product) is not retried; it is
recorded here with its reason, one JSON line per failure, under ``data_dir/reports``. Appends of one
line each are atomic enough for several worker processes on one host (O_APPEND, one write call).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from niteru.products import utc_now
from niteru.settings import Settings


@dataclass(frozen=True)
class TaskFailure:
    task: str
    task_id: str
    product_id: str
    reason: str
    message: str
    arguments: dict[str, Any]
    at: str


def failures_path(settings: Settings) -> Path:
    return settings.data_dir / "reports" / "task-failures.jsonl"


def record_failure(
    settings: Settings, task: str, task_id: str, product_id: str, reason: str, message: str, arguments: dict[str, Any]
) -> TaskFailure:
    failure = TaskFailure(task, task_id, product_id, reason, message, arguments, utc_now().isoformat())
    path = failures_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(asdict(failure), ensure_ascii=False, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return failure


def list_failures(settings: Settings, limit: int | None = None) -> list[TaskFailure]:
    """The recorded failures, newest last (the last ``limit`` when given)."""
    path = failures_path(settings)
    if not path.is_file():
        return []
    rows = [TaskFailure(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[-limit:] if limit else rows
