"""The hot tier's write mark as this API process last saw it: cached answers of open ranges are fresh until the
stream writes again, not for a fixed lifetime only.

An answer of a range ending now changes when the stream's next micro-batch lands, about once a second. With a TTL
alone (``LAKEHOUSE_CACHE_OPEN_TTL_SECONDS``, 0.5 s) a dashboard sees a write up to that long after the hot tier
holds it; at a paced 5,000 events/s that was the whole p95 of the hot-tier-to-API step (0.6 s, docs/benchmarks.md).
So every open entry carries the mark of the hot tier it was computed from, and it stops being fresh as soon as the
mark moves, whatever its TTL still says (the TTL still bounds it: a mark never makes an entry live longer).

The mark is the write counter of ``rollups_1m_ingest`` (``common.hot_store.write_count``): the stream inserts every
micro-batch's raw events first and its minute rollups last, so the counter moves after each batch is wholly
readable. Other writers (restatements, purges) drop the entries they touch themselves (``serving.restatements``).
It is polled on a thread every ``LAKEHOUSE_CACHE_WRITE_POLL_SECONDS``, never per request, so cached answers still
never touch the hot node: an in-process dictionary lookup with embedded chDB, one Flight call per poll behind a hot
node. A ClickHouse server has no counter: the mark stays unknown and the TTL alone decides, as before.
"""

from __future__ import annotations

import asyncio
import logging

from common.hot_store import HotStore, write_count
from serving.background import cancelled

log = logging.getLogger(__name__)

WATCHED_TABLE = "rollups_1m_ingest"
_LOW = 0xFFFF_FFFF


def packed_mark(count: int | None) -> int:
    """A write count as the 64 bits an entry keeps: the hot node's incarnation (bits 64+ of its counts, 0 for embedded
    chDB) folded into the high 32 bits, the count + 1 in the low 32; 0 when unknown."""
    if count is None:
        return 0
    return (((count >> 64) & _LOW) << 32) | ((count + 1) & _LOW)


def superseded(entry_mark: int, current_mark: int) -> bool:
    """Whether the hot tier was written after an entry kept under ``entry_mark`` was computed. Unknown marks (0)
    supersede nothing; a mark of another incarnation (the hot node restarted) supersedes. An entry's mark may be newer
    than this process's (another worker polled first): that is not a write after it."""
    if entry_mark == 0 or current_mark == 0:
        return False
    return (entry_mark >> 32) != (current_mark >> 32) or (entry_mark & _LOW) < (current_mark & _LOW)


class HotWrites:
    """Polls the hot tier's write mark on a background task; ``mark`` is the last one seen (0: unknown)."""

    def __init__(self, store: HotStore, poll_s: float) -> None:
        self._store = store
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None
        self.mark = 0

    def read(self) -> None:
        """Read the mark now (a dictionary lookup with embedded chDB, one Flight call to a hot node): each poll."""
        self.mark = packed_mark(write_count(self._store, WATCHED_TABLE))

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.read)
            except Exception as exc:  # the hot node unreachable: unknown, so the TTL alone decides meanwhile
                self.mark = 0
                log.debug("write mark unavailable: %s", exc)
            await asyncio.sleep(self._poll_s)

    def start(self) -> None:
        if self._poll_s > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        await cancelled(self._task)
        self._task = None
