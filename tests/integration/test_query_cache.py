"""The dashboard cache: a stampede reaches the hot tier once, and Redis being down only costs speed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from common.settings import Settings
from stack.services import Stack

pytestmark = pytest.mark.integration


def closed_range_params(tenant: str) -> dict[str, str]:
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    return {"metric": "events", "tenant": tenant, "from": (end - timedelta(hours=1)).isoformat(),
            "to": end.isoformat(), "group_by": "country"}


def test_200_concurrent_identical_requests_on_a_cold_key_query_the_hot_tier_once(
    api: httpx.Client, settings: Settings, tenant: str
) -> None:
    params = closed_range_params(tenant)

    async def stampede() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=settings.api_url, timeout=60, limits=limits,
                                     headers=dict(api.headers)) as client:
            return await asyncio.gather(*(client.get("/v1/timeseries", params=params) for _ in range(200)))

    before = api.get("/stats").json()["hot_queries"]
    responses = asyncio.run(stampede())
    after = api.get("/stats").json()["hot_queries"]

    assert [r.status_code for r in responses] == [200] * 200
    assert len({r.content for r in responses}) == 1
    assert after - before == 1
    assert sorted({r.headers["x-cache"] for r in responses}) in (["coalesced", "miss"], ["coalesced", "hit", "miss"])
    assert api.get("/v1/timeseries", params=params).headers["x-cache"] == "hit"


def test_the_api_answers_uncached_while_redis_is_down(
    stack: Stack, api: httpx.Client, tenant: str
) -> None:
    params = closed_range_params(tenant)
    stack.down(["redis"])
    try:
        first = api.get("/v1/timeseries", params=params)
        second = api.get("/v1/timeseries", params=params)
        assert (first.status_code, second.status_code) == (200, 200)
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("bypass", "bypass")
        assert first.json()["series"] == second.json()["series"]
        assert api.get("/stats").json()["cache"]["bypassed"] >= 2
    finally:
        stack.up(["redis"])
    assert api.get("/v1/timeseries", params=params).headers["x-cache"] == "miss"
    assert api.get("/v1/timeseries", params=params).headers["x-cache"] == "hit"
