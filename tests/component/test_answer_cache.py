"""The answer cache's store after a computation (serving/cache.py, ``sql/redis/store_answer.lua``) on a real Redis.

A miss takes the computation lock and reads the tenant's epoch in one round trip, computes, then checks the epoch,
stores the entry with its range in the tenant's index and releases the lock in one script. What must hold: an
answer computed while a restatement invalidated its tenant is answered but never stored (the next request
computes again); an answer computed undisturbed is stored, indexed (so a later restatement drops it) and the lock
is released; a computation that fails leaves no entry and no lock behind.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from serving.cache import EntryRange, QueryCache, cache_key, index_key

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server")

START = datetime(2026, 11, 20, tzinfo=UTC)
END = START + timedelta(days=1)


def _run(redis_url: str, scenario: Callable[[QueryCache], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        cache = QueryCache(redis_url)
        try:
            return await scenario(cache)
        finally:
            await cache.close()

    return asyncio.run(run())


def _key(tenant: str, n: int) -> str:
    return cache_key(tenant, "query", {"n": n})


def test_an_undisturbed_answer_is_stored_indexed_and_its_lock_released(redis_url: str) -> None:
    key = _key("cache-t1", 1)

    async def scenario(cache: QueryCache) -> tuple[tuple[bytes, str], tuple[bytes, str]]:
        async def compute() -> bytes:
            return b'{"n": 1}'

        first = await cache.get_or_compute(key, 60, compute, entry_range=EntryRange("cache-t1", START, END))
        again = await cache.get_or_compute(key, 60, compute, entry_range=EntryRange("cache-t1", START, END))
        return first, again

    first, again = _run(redis_url, scenario)
    assert first == (b'{"n": 1}', "miss") and again == (b'{"n": 1}', "hit")
    client = redis.Redis.from_url(redis_url)
    assert client.get(f"{key}:lock") is None, "the lock is released by the store"
    assert any(m.decode().endswith(key) for m in client.zrange(index_key("cache-t1"), 0, -1)), "indexed"
    assert 0 < client.pttl(key) <= 66_000


def test_an_answer_computed_across_a_restatement_is_answered_but_not_stored(redis_url: str) -> None:
    key = _key("cache-t2", 2)

    async def scenario(cache: QueryCache) -> tuple[tuple[bytes, str], tuple[bytes, str], int, int]:
        async def restated_meanwhile() -> bytes:
            await cache.drop_ranges([("cache-t2", START, END)])  # as the restatement listener does, mid-computation
            return b'{"before the restatement": true}'

        async def after() -> bytes:
            return b'{"after": true}'

        raced = await cache.get_or_compute(key, 60, restated_meanwhile, entry_range=EntryRange("cache-t2", START, END))
        discarded = cache.stats.discarded
        again = await cache.get_or_compute(key, 60, after, entry_range=EntryRange("cache-t2", START, END))
        return raced, again, discarded, cache.stats.discarded

    raced, again, discarded, total = _run(redis_url, scenario)
    assert raced == (b'{"before the restatement": true}', "miss"), "the request itself is answered"
    assert discarded == 1 and again == (b'{"after": true}', "miss"), "never stored: the next request computed"
    assert total == 1, "the second computation was stored"
    client = redis.Redis.from_url(redis_url)
    assert client.get(f"{key}:lock") is None


def test_a_failed_computation_leaves_no_entry_and_no_lock(redis_url: str) -> None:
    key = _key("cache-t3", 3)

    async def scenario(cache: QueryCache) -> None:
        async def broken() -> bytes:
            raise RuntimeError("the hot tier failed")

        with pytest.raises(RuntimeError, match="the hot tier failed"):
            await cache.get_or_compute(key, 60, broken, entry_range=EntryRange("cache-t3", START, END))

    _run(redis_url, scenario)
    client = redis.Redis.from_url(redis_url)
    assert client.get(key) is None and client.get(f"{key}:lock") is None


def test_a_stale_entrys_refresh_across_a_restatement_is_not_stored(redis_url: str) -> None:
    key = _key("cache-t4", 4)

    async def scenario(cache: QueryCache) -> tuple[str, bytes | None]:
        async def first() -> bytes:
            return b'{"old": true}'

        await cache.get_or_compute(key, 0.001, first, entry_range=EntryRange("cache-t4", START, END), stale_s=30)
        await asyncio.sleep(0.01)

        async def restated_meanwhile() -> bytes:
            await cache.drop_ranges([("cache-t4", START, END)])
            return b'{"refreshed before the restatement": true}'

        _, how = await cache.get_or_compute(key, 60, restated_meanwhile,
                                            entry_range=EntryRange("cache-t4", START, END), stale_s=30)
        for _ in range(100):  # the background refresh
            if key not in cache._refreshing:
                break
            await asyncio.sleep(0.01)
        return how, await cache._redis.get(key)

    how, stored = _run(redis_url, scenario)
    assert how == "stale"
    assert stored is None, "the restatement dropped the stale entry and the refresh did not store its answer"
    assert redis.Redis.from_url(redis_url).get(f"{key}:lock") is None
