"""Answers of the day copies' shaped rows, kept per process: most of a 7-day question is read once an hour.

A dashboard that follows the clock asks a new question every refresh (its range ends a minute later), so the answer
cache never hits; yet nearly all of each answer comes from the closed days' builds (``common.day_rollups``), whose
rows do not change while they stay the valid builds. The engine reads such a question in two parts
(``day_rollups.Read.shaped`` and ``.rest``), keeps the first part's grouped rows here, and asks the engine only for
the open hours, as a segment cache does in Druid. A kept part is found by its statement and parameters (the tenant,
the builds read, their span, which changes on the hour) and the write counter of ``rollups_1h_by_day_shapes``
(``common.hot_store.write_count``, read before the statement runs; the hot node's clients ask it for its own): a
build, a purge's delete or a dropped build moves it, and a restatement or a stream write into a copied hour changes
the builds read, so a kept part is never older than the rows a fresh read would see. Stores without a counter (a
ClickHouse server, whose other clients write unseen) keep nothing.

Parts kept under one count are dropped when a part is read under another (once the count moved they can never be
found again); the rest is bounded by rows (``max_rows``), the least recently used part dropped first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

MAX_ROWS = 100_000  # ~100-200 bytes a kept row (a tuple of a few values): 10-20 MB at most
TABLE = "rollups_1h_by_day_shapes"

Rows = list[dict[str, Any]]


def _frozen(value: Any) -> Hashable:
    return tuple(value) if isinstance(value, list) else value


class KeptPieces:
    """The grouped rows of recent shaped parts, found by statement, parameters and write count. Thread-safe."""

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._kept: OrderedDict[Hashable, tuple[list[str], list[tuple]]] = OrderedDict()
        self._rows = 0
        self._count: int | None = None  # the write count of the parts kept: parts under another one are gone
        self.hits = 0
        self.misses = 0

    @property
    def rows(self) -> int:
        return self._rows

    def rows_of(self, count: int, sql: str, params: dict[str, Any], read: Callable[[], Rows]) -> Rows:
        """The part's rows: kept ones under the same ``count`` and statement, else ``read()`` (then kept)."""
        key = (count, sql, tuple(sorted((k, _frozen(v)) for k, v in params.items())))
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None:
                self._kept.move_to_end(key)
                self.hits += 1
        if kept is not None:
            columns, values = kept
            return [dict(zip(columns, row, strict=True)) for row in values]
        rows = read()
        columns = list(rows[0]) if rows else []
        values = [tuple(r.values()) for r in rows]
        with self._lock:
            self.misses += 1
            if count != self._count:  # (a hot node's counts carry its incarnation: no order between them)
                self._kept.clear()
                self._rows, self._count = 0, count
            if len(values) <= self.max_rows and key not in self._kept:
                self._kept[key] = (columns, values)
                self._rows += len(values)
                while self._rows > self.max_rows:
                    _, (_, dropped) = self._kept.popitem(last=False)
                    self._rows -= len(dropped)
        return rows
