"""Logging of the API and the worker: one JSON object per line, each carrying the request id.

``setup_logging`` is called by ``niteru serve`` and by the Celery worker at start-up (never at import).
The request id lives in a contextvar: the API's middleware sets it per request (``run_in_threadpool``
copies it into worker threads), the Celery ``before_task_publish`` handler copies it into the task's
headers, and ``task_prerun`` sets it in the worker, so a task's log lines carry the request that asked
for it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# What a client may send as X-Request-ID: short and plain, so it is safe in headers, logs and task headers.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")

# LogRecord attributes that are not the caller's ``extra=`` fields.
# uvicorn's color_message repeats the message with terminal colour codes.
_RECORD_FIELDS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id", "color_message"}


def valid_request_id(value: str | None) -> str | None:
    """The given id when it is short and of a safe charset, else None (the caller makes a new one)."""
    return value if value is not None and _REQUEST_ID_RE.match(value) else None


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request id (None outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, request_id; then the caller's ``extra=`` fields and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: str | int = "INFO", fmt: str = "json") -> None:
    """Route every logger (uvicorn's and Celery's included) to one stderr handler in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # uvicorn and Celery may have given their loggers handlers of their own: let them all reach ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
