"""Redis cache of dashboard answers that a stampede cannot get past.

When a popular dashboard's entry expires, hundreds of identical requests arrive at once; only one of
them may reach the hot tier. Two layers of single-flight see to that: in this process, concurrent
misses of a key await one computation; across processes, a Redis lock (``SET NX PX``) lets one
process compute while the others poll for its answer. Entries live their TTL with ±10 %
jitter, so entries written together do not all expire together. When Redis is down the answer is
computed uncached (and said so), never refused: the cache is an optimisation, not a dependency.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

KEY_PREFIX = "lakehouse:q:v1:"


def cache_key(tenant: str, kind: str, request: dict[str, Any]) -> str:
    """The normalized query (sorted, tenant first) hashed: equal questions share an entry."""
    canonical = json.dumps({"tenant": tenant, "kind": kind, "request": request}, sort_keys=True, default=str)
    return KEY_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    bypassed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        answered = self.hits + self.misses + self.coalesced
        return {"hits": self.hits, "misses": self.misses, "coalesced": self.coalesced, "bypassed": self.bypassed,
                "hit_ratio": round((self.hits + self.coalesced) / answered, 4) if answered else None}


class QueryCache:
    def __init__(self, redis_url: str, lock_timeout_s: float = 30.0) -> None:
        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._lock_timeout = lock_timeout_s
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        self.stats = CacheStats()

    async def get_or_compute(
        self, key: str, ttl_s: float, compute: Callable[[], Awaitable[bytes]]
    ) -> tuple[bytes, str]:
        """The cached answer for ``key`` or the one ``compute`` makes (kept ``ttl_s``); and how it came:
        hit, miss, coalesced or bypass."""
        if key in self._inflight:
            self.stats.coalesced += 1
            return await asyncio.shield(self._inflight[key]), "coalesced"
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value, how = await self._fetch(key, ttl_s, compute)
            future.set_result(value)
            return value, how
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here so that an unawaited failure is not logged as lost
            raise
        finally:
            del self._inflight[key]

    async def _fetch(self, key: str, ttl_s: float, compute: Callable[[], Awaitable[bytes]]) -> tuple[bytes, str]:
        value: bytes | None = None
        try:
            cached = await self._redis.get(key)
            if cached is not None:
                self.stats.hits += 1
                return cached, "hit"
            lock = f"{key}:lock"
            deadline = time.monotonic() + self._lock_timeout
            while not await self._redis.set(lock, b"1", nx=True, px=int(self._lock_timeout * 1000)):
                # another process computes this key: wait for its answer rather than ask the hot tier too
                await asyncio.sleep(0.02)
                cached = await self._redis.get(key)
                if cached is not None:
                    self.stats.coalesced += 1
                    return cached, "coalesced"
                if time.monotonic() > deadline:
                    break
            try:
                value = await compute()
                await self._redis.set(key, value, px=max(1, int(ttl_s * random.uniform(0.9, 1.1) * 1000)))
            finally:
                await self._redis.delete(lock)
            self.stats.misses += 1
            return value, "miss"
        except RedisError as exc:
            self.stats.bypassed += 1
            self.stats.errors = [str(exc)]
            return (value if value is not None else await compute()), "bypass"

    async def close(self) -> None:
        await self._redis.aclose()
