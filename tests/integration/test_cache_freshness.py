"""The cache keeps open windows fresh without waiting (stale-while-revalidate) and never outlives a
restatement: entries whose range overlaps a restated hour are dropped, the others stay."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pyarrow as pa
import pytest

from batch.restate import restate_hour
from common.hot_store import HotStore
from common.restatements import announce_restated_hour
from common.rollups import minute_rollups
from common.settings import Settings
from serving.tenancy.auth import bearer_headers
from tests.integration.conftest import wait_for
from tests.integration.direct_hot import events_table, insert_events

pytestmark = pytest.mark.integration


def total(response: httpx.Response) -> int:
    return sum(point[1] for series in response.json()["series"] for point in series["points"])


def cache_stats(api: httpx.Client) -> dict:
    return api.get("/stats").json()


def test_an_open_window_is_served_stale_while_exactly_one_request_refreshes_it(
    api: httpx.Client, hot: HotStore, settings: Settings, tenant: str
) -> None:
    params = {"metric": "events", "tenant": tenant, "range": "15m"}
    now = datetime.now(UTC)
    insert_events(hot, events_table(tenant, now - timedelta(minutes=3), 5))
    first = api.get("/v1/timeseries", params=params)
    assert (first.headers["x-cache"], total(first)) == ("miss", 5)

    insert_events(hot, events_table(tenant, now - timedelta(minutes=2), 7))  # the hot tier moves on
    time.sleep(settings.cache_open_ttl_seconds * 1.1 + 0.2)  # the entry is past its fresh TTL, within stale
    before = cache_stats(api)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=settings.api_url, timeout=30,
                                     headers=bearer_headers(settings.admin_key)) as client:
            return await asyncio.gather(*(client.get("/v1/timeseries", params=params) for _ in range(30)))

    stale = asyncio.run(burst())
    assert [r.status_code for r in stale] == [200] * 30
    outcomes = {r.headers["x-cache"] for r in stale}
    assert "stale" in outcomes and outcomes <= {"stale", "coalesced", "hit"}, outcomes  # hit: after the refresh
    assert {total(r) for r in stale if r.headers["x-cache"] == "stale"} == {5}  # answered at once, old entry
    assert {total(r) for r in stale if r.headers["x-cache"] == "hit"} <= {12}

    wait_for(lambda: cache_stats(api)["cache"]["refreshes"] > before["cache"]["refreshes"], 10, "the refresh")
    after = cache_stats(api)
    assert after["hot_queries"] - before["hot_queries"] == 1  # 30 stale answers, one hot query
    assert after["cache"]["refreshes"] - before["cache"]["refreshes"] == 1
    refreshed = api.get("/v1/timeseries", params=params)
    assert refreshed.headers["x-cache"] in ("hit", "stale") and total(refreshed) == 12

    # staleness is bounded: past fresh TTL + LAKEHOUSE_CACHE_MAX_STALE_SECONDS the entry is gone
    time.sleep(settings.cache_open_ttl_seconds * 1.1 + settings.cache_max_stale_seconds + 0.3)
    assert api.get("/v1/timeseries", params=params).headers["x-cache"] == "miss"


def test_a_restated_hour_drops_the_cached_ranges_that_include_it_and_only_those(
    api: httpx.Client, hot: HotStore, settings: Settings, tenant: str
) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    counted = events_table(tenant, hour + timedelta(minutes=10), 4)  # the speed layer's rows
    insert_events(hot, counted)
    insert_events(hot, events_table(tenant, hour - timedelta(hours=2) + timedelta(minutes=5), 3))

    def window(start: datetime, end: datetime) -> dict[str, str]:
        return {"metric": "events", "tenant": tenant, "from": start.isoformat(), "to": end.isoformat(),
                "granularity": "hour"}

    including = window(hour - timedelta(hours=1), hour + timedelta(hours=2))
    elsewhere = window(hour - timedelta(hours=3), hour - timedelta(hours=1))
    assert [(r.headers["x-cache"], total(r)) for r in (api.get("/v1/timeseries", params=including),
                                                         api.get("/v1/timeseries", params=elsewhere))] == [
        ("miss", 4), ("miss", 3)]

    # the batch layer's exact hour: the 4 events the stream counted and 2 late ones it dropped (a restatement
    # only adds: batch.restate refuses a swap that would remove a counted event)
    batch = pa.concat_tables([counted, events_table(tenant, hour + timedelta(minutes=20), 2)])
    restatement = restate_hour(hot, hour, minute_rollups(batch), batch,
                               session_gap_minutes=settings.session_gap_minutes)
    before = cache_stats(api)["cache"]
    # what the rollups_hourly asset does right after the swap (orchestration/rollups/assets.py); the API's
    # restatement listener reads the announcement and drops the cached answers that include the hour
    assert announce_restated_hour(settings.redis_url, [d.tenant for d in restatement.drift], hour)
    wait_for(lambda: cache_stats(api)["cache"]["restatements"] > before["restatements"], 10,
             "the API to apply the restated hour")

    assert cache_stats(api)["cache"]["restated_entries"] - before["restated_entries"] >= 1
    recomputed = api.get("/v1/timeseries", params=including)
    assert (recomputed.headers["x-cache"], total(recomputed)) == ("miss", 6)
    untouched = api.get("/v1/timeseries", params=elsewhere)
    assert (untouched.headers["x-cache"], total(untouched)) == ("hit", 3)
