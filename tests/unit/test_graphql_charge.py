"""Each root field of a GraphQL document after the first takes one more token of the key's rate limit."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from serving.graphql_api.context import GraphContext
from serving.tenancy.auth import AuthError, Caller
from serving.tenancy.rate_limit import Decision


class Bucket:
    """A token bucket without refill: ``tokens`` takes, then denials."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.taken: list[str] = []

    async def take(self, bucket: str, rate_per_second: float, burst: int) -> Decision:
        self.taken.append(bucket)
        self.tokens -= 1
        return Decision(self.tokens >= 0, retry_after_s=0 if self.tokens >= 0 else 2)


def _context(bucket: Bucket, caller: Caller) -> GraphContext:
    auth: Any = SimpleNamespace(limiter=bucket)
    unused: Any = None
    return GraphContext("acme", caller, auth, unused, unused, unused, unused, unused, 1.0, unused, unused, unused)


def test_the_first_field_rides_on_the_request_and_every_further_one_takes_a_token() -> None:
    bucket = Bucket(tokens=2)
    ctx = _context(bucket, Caller("lhk_1", "tenant", "acme", rate_per_second=5, burst=3))

    async def fields(n: int) -> None:
        for _ in range(n):
            await ctx.charge()

    asyncio.run(fields(3))
    assert bucket.taken == ["lhk_1", "lhk_1"]  # three fields: the request's token and two more
    with pytest.raises(AuthError) as denied:
        asyncio.run(fields(1))
    assert denied.value.status == 429 and denied.value.headers == {"Retry-After": "2"}
    assert "fields of this document" in denied.value.message


def test_an_unlimited_key_is_never_charged() -> None:
    bucket = Bucket(tokens=0)
    ctx = _context(bucket, Caller("settings", "admin", None))

    async def fields() -> None:
        for _ in range(5):
            await ctx.charge()

    asyncio.run(fields())
    assert bucket.taken == []
