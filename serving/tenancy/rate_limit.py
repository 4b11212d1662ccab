"""Per-key rate limits: a token bucket per API key in Redis, shared by every API replica.

The bucket (``rate_limit.lua``) holds up to ``burst`` tokens and refills at ``rate`` tokens a second;
each request takes one or is answered 429 with ``Retry-After``. The whole read-refill-take step is one
Lua script, so concurrent requests on several replicas cannot both take the last token. Redis being
down must not take the API down with it: the request is then allowed (fail open), counted in the
serving counters (``rate_limit_fail_open``) and logged once per outage.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

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


class RateLimiter:
    def __init__(self, redis_url: str, counters: dict[str, int]) -> None:
        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_SCRIPT)
        self._counters = counters
        self._down = False

    async def take(self, bucket: str, rate_per_second: float, burst: int) -> Decision:
        """Take one token from ``bucket``; a denial says how long until the next token."""
        try:
            allowed, wait_ms, tokens = await self._script(keys=[BUCKET_PREFIX + bucket],
                                                          args=[rate_per_second, burst])
        except RedisError as exc:
            self._counters["rate_limit_fail_open"] = self._counters.get("rate_limit_fail_open", 0) + 1
            if not self._down:
                log.warning("rate limits are off while Redis is unreachable (requests are allowed): %s", exc)
                self._down = True
            return Decision(True)
        if self._down:
            log.info("Redis is reachable again: rate limits apply")
            self._down = False
        if int(allowed):
            return Decision(True, tokens_left=float(tokens))
        self._counters["rate_limited"] = self._counters.get("rate_limited", 0) + 1
        return Decision(False, retry_after_seconds(int(wait_ms)), float(tokens))

    async def close(self) -> None:
        await self._redis.aclose()
