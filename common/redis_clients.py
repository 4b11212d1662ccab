"""Redis clients that survive a Redis restart without mistaking it for an outage.

A connection pooled before Redis restarted fails on its next use ("Connection lost"), and redis-py does
not retry that by default. Every caller here falls back on a Redis error (the cache answers uncached, the
rate limiter keeps buckets in-process, the alert evaluator runs without its lease), so one stale
connection per pooled slot would count as an outage: a burst of requests spread over stale connections
went half to Redis's buckets and half to the in-process ones, and a rate limit let through more than its
burst. One retry on a fresh connection tells a restart that already happened from Redis being down;
no backoff, so a real outage still costs a single connect timeout.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

_RETRIED = [RedisConnectionError, RedisTimeoutError]


def async_redis(url: str, timeout_s: float, connect_timeout_s: float | None = None) -> aioredis.Redis:
    """An asyncio client for ``url``: ``timeout_s`` per command, one retry on a fresh connection."""
    return aioredis.Redis.from_url(url, socket_timeout=timeout_s,
                                   socket_connect_timeout=connect_timeout_s or timeout_s,
                                   retry=AsyncRetry(NoBackoff(), 1), retry_on_error=_RETRIED)


def sync_redis(url: str, timeout_s: float) -> redis.Redis:
    """A blocking client for ``url``, with the same retry as ``async_redis``."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                retry=Retry(NoBackoff(), 1), retry_on_error=_RETRIED)
