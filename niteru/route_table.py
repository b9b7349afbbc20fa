"""The fitted routing table: per category, the weights of the vectors and the fusion rule that a rebuild
chose on a validation split of its new collection (``niteru.route_fit``), with the fit's figures.

One JSON file per collection, ``models_dir/routing/<collection>.json``, written atomically before the
alias moves (like the collection's text model, ``niteru.model_sync``): a process that sees the new
collection finds its table, and a rollback finds the old collection's table again. A leaf of the core
(routing reads it, the fit writes it); no numpy, no store.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embedding.text.artifact import replace_durably
from niteru.fusion import Fusion
from niteru.settings import Settings

log = logging.getLogger(__name__)

# Bumped when the file's layout changes; a file of another format is not used (routing falls back to the
# default table until the next rebuild fits one). Not bumped for the ``lexical`` key a row's weights may
# carry (issue #17): the layout is the same, older tables (no key) load as they are, and code from before
# the key plans a query from the weights of the vectors it sends, so it serves such a row without the bonus.
FORMAT = 1


@dataclass(frozen=True)
class Row:
    """One category's choice. ``basis``: ``fitted`` (its own best), or why it took the global row
    (``global: too few queries``, ``global: not better on held-out``, ``global: no route eligible on
    both halves``, ``global``: the row of every category the fit had no row for), or ``reference mode ...``: no
    eligible route held, so a mode users had before the fit (``niteru.route_refs``)."""

    weights: dict[str, float]  # image, text, joint, and ``lexical`` (the BM25 bonus) only when positive
    fusion: Fusion
    basis: str = "fitted"
    queries: int = 0  # validation queries of the category
    score: float | None = None  # the objective of this row on all of them
    global_score: float | None = None  # the global row's, on the same queries
    single: dict[str, float] = field(default_factory=dict)  # each vector alone, on the same queries
    held_out: dict[str, float] = field(default_factory=dict)  # the check: this choice and global, held-out half
    # The look-alike eligibility of this row on its queries (niteru.route_refs): variant recall@1, colour and
    # brand consistency, each with its floor (the best reference mode's less the tolerance) and scope.
    lookalike: dict[str, float | str | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["fusion"] = self.fusion.value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        return cls(**{**data, "fusion": Fusion(data["fusion"])})


@dataclass(frozen=True)
class RouteTable:
    version: str  # the collection it was fitted on, and when
    collection: str
    objective: str
    global_row: Row
    rows: dict[str, Row]
    info: dict[str, Any] = field(default_factory=dict)  # seed, split share, grid, timing: for the report

    def row(self, category: str | None) -> Row:
        """The category's row; the global one for a category the fit did not see."""
        return self.rows.get(category or "", self.global_row)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "collection": self.collection,
            "objective": self.objective,
            "global": self.global_row.to_json(),
            "rows": {c: r.to_json() for c, r in sorted(self.rows.items())},
            "info": self.info,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RouteTable:
        if data.get("format") != FORMAT:
            raise ValueError(f"routing table format {data.get('format')!r}, this code reads {FORMAT}")
        return cls(
            version=data["version"],
            collection=data["collection"],
            objective=data["objective"],
            global_row=Row.from_json(data["global"]),
            rows={c: Row.from_json(r) for c, r in data["rows"].items()},
            info=data.get("info", {}),
        )


def table_path(settings: Settings, collection: str) -> Path:
    return settings.models_dir / "routing" / f"{collection}.json"


def save_route_table(settings: Settings, table: RouteTable) -> Path:
    """Durable before it returns: the rebuild saves it before the swap."""
    path = table_path(settings, table.collection)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_durably(path, json.dumps(table.to_json(), indent=1, ensure_ascii=False))
    return path


def drop_route_table(settings: Settings, collection: str) -> None:
    """With its collection: the rebuild drops both (a table is small, but one a day adds up)."""
    table_path(settings, collection).unlink(missing_ok=True)


def load_route_table(settings: Settings, collection: str | None) -> RouteTable | None:
    """The table fitted on ``collection``; None when there is none (never fitted, or unreadable: routing
    then uses the default table, and says so in every route)."""
    if collection is None:
        return None
    path = table_path(settings, collection)
    if not path.is_file():
        return None
    try:
        return RouteTable.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        log.error("routing table %s unreadable, the default table routes: %s", path, exc)
        return None
