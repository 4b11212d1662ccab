"""Versions for the rows of ReplacingMergeTree tables that a process rewrites (alerts, report schedules).

ClickHouse keeps the row with the highest version under ``FINAL``; nanoseconds since the epoch order writes
across processes, and +1 on a tie keeps two writes of one process within the same nanosecond in order.
"""

from __future__ import annotations

import threading
import time


class RowVersions:
    """Strictly increasing versions in this process, so a later write always wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> int:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            return self._last
