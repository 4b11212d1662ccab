"""Per-key rate limits: a token bucket per API key in Redis, shared by every API replica.

The bucket (``rate_limit.lua``) holds up to ``burst`` tokens and refills at ``rate`` tokens a second;
each request takes one or is answered 429 with ``Retry-After``. The whole read-refill-take step is one
Lua script, so concurrent requests on several replicas cannot both take the last token. Redis being
down must neither take the API down with it nor lift the limits: each process then keeps the buckets
itself (``LocalBuckets``, the same rule per replica), counted in the serving counters
(``rate_limit_local``) and logged once per outage.

The buckets live in ``rate_limit_redis_url`` (default: the cache's Redis). A cache under ``allkeys-lru``
may evict any key when memory runs out, a bucket included (another logical database does not help:
memory and eviction are per instance), which would hand a caller a full burst again; production points
this setting at a Redis instance with ``maxmemory-policy noeviction`` (docs/security.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from redis.exceptions import RedisError

from common.redis_clients import async_redis

log = logging.getLogger(__name__)

BUCKET_PREFIX = "lakehouse:rl:v1:"
_SCRIPT = (Path(__file__).parent / "rate_limit.lua").read_text()


def retry_after_seconds(wait_ms: float) -> int:
    """The ``Retry-After`` value: whole seconds (HTTP has no fractions), at least 1."""
    return max(1, math.ceil(wait_ms / 1000))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0
    tokens_left: float | None = None  # None: not known (Redis down, allowed anyway)


class LocalBuckets:
    """The same token buckets kept in this process: the limit while Redis cannot be reached."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # bucket → (tokens, at)

    def take(self, bucket: str, rate_per_second: float, burst: int, cost: int = 1) -> Decision:
        now = self._clock()
        cost = min(max(1, cost), burst)
        tokens, at = self._buckets.get(bucket, (float(burst), now))
        tokens = min(float(burst), tokens + max(0.0, now - at) * rate_per_second)
        if tokens >= cost:
            self._buckets[bucket] = (tokens - cost, now)
            return Decision(True, tokens_left=tokens - cost)
        self._buckets[bucket] = (tokens, now)
        return Decision(False, retry_after_seconds((cost - tokens) * 1000 / rate_per_second), tokens)


class RateLimiter:
    def __init__(self, redis_url: str, counters: dict[str, int]) -> None:
        self._redis = async_redis(redis_url, timeout_s=0.5)
        self._script = self._redis.register_script(_SCRIPT)
        self._counters = counters
        self._down = False
        self._local = LocalBuckets()

    async def take(self, bucket: str, rate_per_second: float, burst: int, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from ``bucket``; a denial says how long until there are enough."""
        try:
            allowed, wait_ms, tokens = await self._script(keys=[BUCKET_PREFIX + bucket],
                                                          args=[rate_per_second, burst, cost])
        except RedisError as exc:
            self._counters["rate_limit_local"] = self._counters.get("rate_limit_local", 0) + 1
            if not self._down:
                log.warning("Redis is unreachable: rate limits are kept by each API process until it is back: %s",
                            exc)
                self._down = True
            decision = self._local.take(bucket, rate_per_second, burst, cost)
            if not decision.allowed:
                self._counters["rate_limited"] = self._counters.get("rate_limited", 0) + 1
            return decision
        if self._down:
            log.info("Redis is reachable again: rate limits apply")
            self._down = False
        if int(allowed):
            return Decision(True, tokens_left=float(tokens))
        self._counters["rate_limited"] = self._counters.get("rate_limited", 0) + 1
        return Decision(False, retry_after_seconds(int(wait_ms)), float(tokens))

    async def close(self) -> None:
        await self._redis.aclose()
