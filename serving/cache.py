"""Redis cache of dashboard answers that a stampede cannot get past, that stays fresh and that a
restatement cannot leave wrong.

When a popular dashboard's entry expires, hundreds of identical requests arrive at once; only one of
them may reach the hot tier. Two layers of single-flight see to that: in this process, concurrent
misses of a key await one computation; across processes, a Redis lock (``SET NX PX``) lets one
process compute while the others poll for its answer. Entries live their TTL with ±10 %
jitter, so entries written together do not all expire together. When Redis is down the answer is
computed uncached (and said so), never refused: the cache is an optimisation, not a dependency.

Open windows (ranges ending now) are kept for a short TTL and may then be served *stale while
revalidated*: past its fresh TTL and for at most ``stale_s`` more, an entry is answered at once while
exactly one request (one per key across processes, through the same lock) recomputes it in the
background. A dashboard never waits for the hot tier on a busy key, and what it sees is never older
than fresh TTL + ``stale_s``: past that the entry is gone from Redis and the next request computes.

Open entries also stop being fresh as soon as the hot tier is written after them (``serving.hot_writes``): each
carries the write mark it was computed under, and a later mark makes it stale, then served and refreshed as above.

Restatements replace whole hours of the hot tier from another process (Dagster). Every entry is
therefore indexed in a per-tenant sorted set (member ``start|end|key``, score = when it expires), so
``drop_ranges`` can drop exactly the entries whose range overlaps a restated hour; a per-tenant
epoch, bumped by each invalidation, stops a computation that was running during it from storing its
pre-restatement answer. The batch layer only announces restated hours (``common.restatements``); the
serving process's listener (``serving/restatements.py``) calls ``drop_ranges``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError

from common.redis_clients import RawGets, async_redis
from common.settings import Settings
from common.sql_files import sql_file
from serving.hot_writes import HotWrites, superseded

KEY_PREFIX = "lakehouse:q:v2:"  # v2: the header holds the write mark too
INDEX_PREFIX = "lakehouse:qidx:v1:"  # per-tenant sorted set of cached ranges
EPOCH_PREFIX = "lakehouse:qepoch:v1:"  # per-tenant invalidation counter
# an entry is 8 bytes "fresh until" (epoch seconds) and 8 bytes the hot tier's write mark it was computed under
# (``serving.hot_writes``; 0 when none was watched), followed by the answer
_HEADER = struct.Struct(">dQ")
INDEX_KEEP_SECONDS = 3600  # an idle tenant's index disappears this long after its last write

log = logging.getLogger(__name__)


def cache_key(tenant: str, kind: str, request: dict[str, Any]) -> str:
    """The normalized query (sorted, tenant first) hashed: equal questions share an entry."""
    canonical = json.dumps({"tenant": tenant, "kind": kind, "request": request}, sort_keys=True, default=str)
    return KEY_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()


def lifetime(settings: Settings, open_range: bool) -> dict[str, Any]:
    """``get_or_compute``'s ``ttl_s``, ``stale_s`` and ``live`` for an answer of a range ending now (short-lived,
    served stale while refreshed, superseded by the hot tier's next write) or of a closed one."""
    if open_range:
        return {"ttl_s": settings.cache_open_ttl_seconds, "stale_s": settings.cache_max_stale_seconds, "live": True}
    return {"ttl_s": settings.cache_ttl_seconds, "stale_s": 0.0, "live": False}


def index_key(tenant: str) -> str:
    return INDEX_PREFIX + tenant


def epoch_key(tenant: str) -> str:
    return EPOCH_PREFIX + tenant


@dataclass(frozen=True)
class EntryRange:
    """Whose data an entry holds and which [start, end) it covers: what invalidation matches on."""

    tenant: str
    start: datetime
    end: datetime

    def member(self, key: str) -> str:
        return f"{int(self.start.timestamp())}|{int(self.end.timestamp())}|{key}"


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    bypassed: int = 0
    stale: int = 0  # answered from an entry past its fresh TTL while it is refreshed
    superseded: int = 0  # entries within their TTL that the hot tier was written after (stale or recomputed)
    refreshes: int = 0  # background refreshes that stored a new answer
    refresh_errors: int = 0
    discarded: int = 0  # answers not stored because an invalidation ran while they were computed
    restatements: int = 0  # restated hours applied to the cache (serving/restatements.py)
    restated_entries: int = 0  # entries dropped because a restatement included their range
    errors: list[str] = field(default_factory=list)

    @property
    def answered_from_cache(self) -> int:
        return self.hits + self.coalesced + self.stale

    def hit_ratio(self) -> float | None:
        answered = self.answered_from_cache + self.misses
        return round(self.answered_from_cache / answered, 4) if answered else None

    def as_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "coalesced": self.coalesced, "bypassed": self.bypassed,
                "stale": self.stale, "superseded": self.superseded, "refreshes": self.refreshes,
                "refresh_errors": self.refresh_errors, "discarded": self.discarded, "restatements": self.restatements,
                "restated_entries": self.restated_entries, "hit_ratio": self.hit_ratio()}


class QueryCache:
    def __init__(self, redis_url: str, lock_timeout_s: float = 30.0, writes: HotWrites | None = None) -> None:
        # the hot tier's write mark; without it (or while unknown) open entries live their TTL alone
        self.writes = writes
        self._redis = async_redis(redis_url, timeout_s=0.5)
        self._gets = RawGets(redis_url, timeout_s=0.5)  # the fast path's lookups: a GET at a quarter of the CPU
        self._lock_timeout = lock_timeout_s
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._peeks: dict[str, asyncio.Future[bytes | None]] = {}  # ``fresh`` lookups under way, by key
        self._store = self._redis.register_script(sql_file("redis/store_answer.lua"))
        self.stats = CacheStats()

    async def fresh(self, key: str) -> tuple[bytes, str] | None:
        """The entry's answer and how it came (hit, or coalesced with a concurrent lookup of the key) while
        it is fresh; None when it is missing or past its fresh time, or a ``get_or_compute`` of the key is
        under way (the caller then goes through ``get_or_compute``, which serves stale entries, computes and
        coalesces). Concurrent lookups of one key share one Redis ``GET``. Raises ``RedisError``."""
        pending = self._peeks.get(key)
        if pending is not None:
            body = await asyncio.shield(pending)
            if body is None:
                return None
            self.stats.coalesced += 1
            return body, "coalesced"
        if key in self._inflight:
            return None
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._peeks[key] = future
        body = None
        try:
            cached = await (self._gets.get(key) if self._gets.supported else self._redis.get(key))
            if cached is not None:
                fresh_until, mark, stored = _unpack(cached)
                if time.time() < fresh_until and not self._superseded(mark):
                    body = stored
        finally:
            del self._peeks[key]
            future.set_result(body)  # waiters of a failed lookup go the long way, as after a miss
        if body is None:
            return None
        self.stats.hits += 1
        return body, "hit"

    async def get_or_compute(
        self,
        key: str,
        ttl_s: float,
        compute: Callable[[], Awaitable[bytes]],
        *,
        entry_range: EntryRange | None = None,
        stale_s: float = 0.0,
        live: bool = False,
    ) -> tuple[bytes, str]:
        """The cached answer for ``key`` or the one ``compute`` makes (fresh for ``ttl_s``, then served
        stale for up to ``stale_s`` while one request refreshes it); and how it came: hit, stale, miss,
        coalesced or bypass. ``entry_range`` makes the entry findable by ``drop_ranges``; a ``live`` entry (an open
        range's) is also stale once the hot tier is written after it (``serving.hot_writes``)."""
        if key in self._inflight:
            self.stats.coalesced += 1
            return await asyncio.shield(self._inflight[key]), "coalesced"
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value, how = await self._fetch(key, ttl_s, compute, entry_range, stale_s, live)
            future.set_result(value)
            return value, how
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here so that an unawaited failure is not logged as lost
            raise
        finally:
            del self._inflight[key]

    def _superseded(self, mark: int) -> bool:
        """A live entry (``mark``) the hot tier was written after, as far as this process has seen."""
        return bool(mark) and self.writes is not None and superseded(mark, self.writes.mark)

    def _mark(self, live: bool) -> int:
        """The write mark a live entry is kept under, read before its computation reads the hot tier."""
        return self.writes.mark if live and self.writes is not None else 0

    async def _fetch(
        self, key: str, ttl_s: float, compute: Callable[[], Awaitable[bytes]], entry_range: EntryRange | None,
        stale_s: float, live: bool,
    ) -> tuple[bytes, str]:
        value: bytes | None = None
        try:
            cached = await self._redis.get(key)
            if cached is not None:
                fresh_until, mark, body = _unpack(cached)
                if time.time() < fresh_until:
                    if not self._superseded(mark):
                        self.stats.hits += 1
                        return body, "hit"
                    self.stats.superseded += 1  # within its TTL, past the stream's next write
                if stale_s > 0:  # (an entry without staleness may outlive its fresh time by the SET's latency)
                    self.stats.stale += 1
                    await self._refresh_in_background(key, ttl_s, compute, entry_range, stale_s, live)
                    return body, "stale"
            lock = f"{key}:lock"
            deadline = time.monotonic() + self._lock_timeout
            while True:
                # the tenant's epoch is read with the lock, before the computation (see _compute_and_store)
                locked, epoch = await self._lock_and_epoch(lock, entry_range)
                if locked:
                    break
                # another process computes this key: wait for its answer rather than ask the hot tier too
                await asyncio.sleep(0.02)
                cached = await self._redis.get(key)
                if cached is not None:
                    self.stats.coalesced += 1
                    return _unpack(cached)[2], "coalesced"
                if time.monotonic() > deadline:
                    lock = ""  # computed without the lock: nothing of ours to release
                    break
            released = False
            try:
                value, released = await self._compute_and_store(key, ttl_s, compute, entry_range, stale_s, epoch, lock,
                                                                 live)
            finally:
                if lock and not released:
                    with contextlib.suppress(RedisError):  # Redis gone meanwhile: the lock expires by itself
                        await self._redis.delete(lock)
            self.stats.misses += 1
            return value, "miss"
        except RedisError as exc:
            self.stats.bypassed += 1
            self.stats.errors = [str(exc)]
            return (value if value is not None else await compute()), "bypass"

    async def _lock_and_epoch(self, lock: str, entry_range: EntryRange | None) -> tuple[bool, bytes | None]:
        """Take the computation lock and read the tenant's epoch in one round trip: (taken, epoch)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(lock, b"1", nx=True, px=int(self._lock_timeout * 1000))
        if entry_range is not None:
            pipe.get(epoch_key(entry_range.tenant))
        replies = await pipe.execute()
        return bool(replies[0]), (replies[1] if entry_range is not None else None)

    async def _compute_and_store(
        self, key: str, ttl_s: float, compute: Callable[[], Awaitable[bytes]], entry_range: EntryRange | None,
        stale_s: float, epoch: bytes | None, lock: str = "", live: bool = False,
    ) -> tuple[bytes, bool]:
        """Compute, then store the answer unless the tenant's epoch moved since ``epoch`` was read (a restatement
        ran meanwhile: the answer may predate it), and release ``lock``: the check, the store and the release in
        one script, so no invalidation can fall between the check and the store. (answer, lock released)."""
        mark = self._mark(live)
        value = await compute()
        fresh_s = ttl_s * random.uniform(0.9, 1.1)
        now = time.time()
        keep_ms = max(1, int((fresh_s + stale_s) * 1000))
        tenant = entry_range.tenant if entry_range is not None else ""
        try:
            stored = await self._store(
                keys=[key, index_key(tenant) if tenant else "", epoch_key(tenant) if tenant else "", lock],
                args=[_HEADER.pack(now + fresh_s, mark) + value, keep_ms, int(tenant != ""), epoch or b"",
                      entry_range.member(key) if entry_range is not None else "", now + keep_ms / 1000, now,
                      int(fresh_s + stale_s) + INDEX_KEEP_SECONDS])
            if not stored:
                self.stats.discarded += 1  # computed across a restatement of this tenant: may predate it
            return value, bool(lock)
        except RedisError as exc:  # Redis went away after the computation: answer it, uncached
            self.stats.errors = [str(exc)]
        return value, False

    async def _refresh_in_background(
        self, key: str, ttl_s: float, compute: Callable[[], Awaitable[bytes]], entry_range: EntryRange | None,
        stale_s: float, live: bool,
    ) -> None:
        """Start one refresh of a stale key unless this or another process already runs one."""
        if key in self._refreshing:
            return
        lock = f"{key}:lock"
        locked, epoch = await self._lock_and_epoch(lock, entry_range)
        if not locked:
            return

        async def refresh() -> None:
            released = False
            try:
                _, released = await self._compute_and_store(key, ttl_s, compute, entry_range, stale_s, epoch, lock,
                                                            live)
                self.stats.refreshes += 1
            except Exception as exc:  # the stale entry keeps answering until it expires; the next miss retries
                self.stats.refresh_errors += 1
                log.warning("background refresh of %s failed: %s", key, exc)
            finally:
                self._refreshing.pop(key, None)
                if not released:
                    with contextlib.suppress(RedisError):  # the lock expires by itself
                        await self._redis.delete(lock)

        self._refreshing[key] = asyncio.get_running_loop().create_task(refresh())

    async def drop_ranges(self, ranges: Iterable[tuple[str, datetime, datetime]], now: float | None = None) -> int:
        """Drop every cached answer of ``tenant`` whose range overlaps [start, end), for each given triple;
        returns how many entries were dropped (what a restatement of those hours makes wrong)."""
        now = time.time() if now is None else now
        dropped = 0
        for tenant, spans in _spans_by_tenant(ranges).items():
            await self._redis.incr(epoch_key(tenant))  # computations running now must not store what they read
            members = [m.decode() if isinstance(m, bytes) else m
                       for m in await self._redis.zrangebyscore(index_key(tenant), now, "+inf")]
            hit = [(m, key) for m in members for s, e in spans if (key := _overlaps(m, s, e))]
            if hit:
                pipe = self._redis.pipeline(transaction=False)
                pipe.delete(*{key for _, key in hit})
                pipe.zrem(index_key(tenant), *{m for m, _ in hit})
                await pipe.execute()
                dropped += len({key for _, key in hit})
        self.stats.restated_entries += dropped
        return dropped

    async def close(self) -> None:
        for task in list(self._refreshing.values()):
            task.cancel()
        self._gets.close()
        await self._redis.aclose()


def _unpack(stored: bytes) -> tuple[float, int, bytes]:
    """(fresh until, write mark, answer) of a stored entry."""
    fresh_until, mark = _HEADER.unpack_from(stored)
    return fresh_until, mark, stored[_HEADER.size:]


def _overlaps(member: str, start: int, end: int) -> str | None:
    """The key of an index member whose [start, end) overlaps [start, end), else None."""
    entry_start, entry_end, key = member.split("|", 2)
    return key if int(entry_start) < end and int(entry_end) > start else None


def _spans_by_tenant(ranges: Iterable[tuple[str, datetime, datetime]]) -> dict[str, list[tuple[int, int]]]:
    by_tenant: dict[str, list[tuple[int, int]]] = {}
    for tenant, start, end in ranges:
        by_tenant.setdefault(tenant, []).append((int(start.timestamp()), int(end.timestamp())))
    return by_tenant
