"""What each engine implements: a few primitives on one named collection, and its locking.

``ProductStore`` (``base.py``) writes every public method once over these; ``qdrant.py`` and ``edge.py``
implement them by translating to their own client's calls and types.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from niteru.store.plan import Conditions, QueryPlan
from niteru.store.records import Row


class EnginePrimitives(ABC):
    """Records are the engine's own objects with ``payload``, ``vector`` (and ``score``) attributes."""

    lock: contextlib.AbstractContextManager[Any]
    # What to do when the stored vector sizes no longer fit the models ({path}: the store's folder).
    rebuild_hint = "delete the collection, then `niteru ingest`"
    # The engine filters by id point by point while it scans unfiltered at full speed (see ``plan_search``).
    slow_id_filter = False
    # True: every call of the engine holds the GIL for its whole run (Edge), so a worker thread gives its calls
    # no parallelism, only thread hand-offs, and the API makes a search's calls on the event loop's thread.
    holds_gil = False

    @abstractmethod
    def _alias_target(self, refresh: bool) -> str | None:
        """The collection the alias points at (None: no alias yet); ``refresh`` reads it anew."""

    @abstractmethod
    def _collections(self) -> list[str]: ...

    @abstractmethod
    def _create_collection(
        self, name: str, dims: Mapping[str, int], quantized: bool = True, lexical: bool = False
    ) -> None:
        """A new empty collection with cosine vectors of ``dims`` and the ``PAYLOAD_INDEXES``; with
        ``quantized``, the vectors the settings quantize are (not the tombstones' one-value vectors); with
        ``lexical``, the sparse ``LEXICAL`` vector with the IDF modifier (the engine weighs each term by its
        rarity in the collection)."""

    @abstractmethod
    def _point_alias(self, version: str) -> None:
        """Move (or create) the alias in one atomic operation."""

    @abstractmethod
    def _drop_collection(self, version: str) -> None: ...

    @abstractmethod
    def _dims(self, version: str) -> dict[str, int]: ...

    @abstractmethod
    def _has_lexical(self, version: str) -> bool:
        """Whether the collection was created with the lexical vector."""

    @abstractmethod
    def _retrieve(self, version: str, ids: list[str], payload: bool | list[str], vectors: bool) -> Sequence[Any]:
        """Records (``payload``, ``vector``) of the point ids that exist."""

    @abstractmethod
    def _query_batch(self, version: str, plans: Sequence[QueryPlan]) -> list[Sequence[Any]]:
        """Scored points (``payload``, ``vector``, ``score``) of each plan, best first."""

    @abstractmethod
    def _scroll_page(self, version: str, offset: Any, limit: int, vectors: bool) -> tuple[Sequence[Any], Any]:
        """A page of records and the next page's offset (None after the last)."""

    @abstractmethod
    def _count(self, version: str) -> int: ...

    @abstractmethod
    def _write(self, version: str, rows: Sequence[Row], condition: Conditions) -> None:
        """Upsert; an existing point is replaced only where it meets ``condition``, a new one is inserted."""

    @abstractmethod
    def _delete(self, version: str, condition: Conditions) -> None:
        """Delete the points that meet ``condition``."""

    def _wrote(self, version: str, n: int) -> None:  # noqa: B027 (optional: most engines count nothing)
        """Told after each upsert (an engine that indexes after so many writes counts them)."""
