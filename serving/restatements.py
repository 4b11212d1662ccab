"""Applies the batch layer's restatement announcements to the cache: a background task of the serving process.

The batch layer appends each restated hour to a Redis stream (``common.restatements``). This task reads it
in one consumer group shared by every API replica, so each announcement is applied once, by whichever
replica reads it first, and announcements made while no replica ran are applied at the next start (the
group keeps its position). Applying one is ``QueryCache.drop_ranges`` for the hour of each tenant, then
acknowledging it; an announcement read by a replica that died before acknowledging it is claimed by
another after ``CLAIM_IDLE_MS``. Redis being down pauses the task (logged once per outage), never the API.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

from redis.exceptions import RedisError, ResponseError

from common.redis_clients import async_redis
from common.restatements import STREAM, RestatedHour
from serving.background import cancelled
from serving.cache import QueryCache

GROUP = "serving-cache"
BLOCK_MS = 1000  # how long one read waits for a new announcement
CLAIM_IDLE_MS = 30_000  # an unacknowledged announcement this old is taken over from its (dead) reader
RETRY_SECONDS = 2.0

log = logging.getLogger(__name__)


class RestatementListener:
    def __init__(self, redis_url: str, cache: QueryCache, consumer: str | None = None) -> None:
        self._redis = async_redis(redis_url, timeout_s=BLOCK_MS / 1000 + 5, connect_timeout_s=2)
        self._cache = cache
        self._consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._task: asyncio.Task[None] | None = None
        self._group_ready = False
        self._outage = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancelled(self._task)
        await self._redis.aclose()

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
                if self._outage:
                    log.info("restatement listener: Redis is back")
                self._outage = False
            except RedisError as exc:
                if not self._outage:
                    log.warning("restatement listener: Redis unreachable (%s); retrying every %.0f s", exc,
                                RETRY_SECONDS)
                self._outage, self._group_ready = True, False
                await asyncio.sleep(RETRY_SECONDS)

    async def poll_once(self) -> int:
        """Apply the announcements waiting (or arriving within ``BLOCK_MS``); returns how many were applied."""
        await self._ensure_group()
        _next, entries, *_ = await self._redis.xautoclaim(STREAM, GROUP, self._consumer, CLAIM_IDLE_MS,
                                                          start_id="0-0", count=100)
        if not entries:
            answer = await self._redis.xreadgroup(GROUP, self._consumer, {STREAM: ">"}, count=100, block=BLOCK_MS)
            entries = [entry for _stream, stream_entries in answer or [] for entry in stream_entries]
        for entry_id, fields in entries:
            await self._apply(entry_id, fields)
        return len(entries)

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:  # from the stream's start: what was announced before any replica listened is applied too
            await self._redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _apply(self, entry_id: Any, fields: Any) -> None:
        try:
            restated = RestatedHour.from_fields(fields or {})  # None: an entry trimmed away while it was pending
        except ValueError as exc:  # nothing to apply; acknowledged so it is not read again
            log.warning("restatement listener: skipping entry %s: %s", entry_id, exc)
        else:
            dropped = await self._cache.drop_ranges((t, restated.hour, restated.end) for t in restated.tenants)
            self._cache.stats.restatements += 1
            log.info("restated hour %s (%d tenants): %d cached answers dropped", restated.hour.isoformat(),
                     len(restated.tenants), dropped)
        await self._redis.xack(STREAM, GROUP, entry_id)
