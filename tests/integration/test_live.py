"""Live updates on the real stack: a Server-Sent Events stream shows events seconds after they were sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from common.settings import Settings
from serving.tenancy.auth import bearer_headers
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration


def sse_events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event, parsed data) per event; comment lines and the retry hint come as ("comment"/"retry", text)."""
    event, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("retry:"):
            yield "retry", int(line[6:])
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def point(update: dict[str, Any], minute: str) -> float | None:
    """The summed value of all series at ``minute`` (None when the minute is not in the update)."""
    values = [value for series in update["series"] for at, value in series["points"] if at == minute]
    return sum(values) if values else None


def test_the_live_stream_shows_the_newest_minute_rising_to_what_was_sent(
    api: httpx.Client, settings: Settings, tenant: str
) -> None:
    sent_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    minute = sent_at.replace(second=0)
    key = minute.isoformat().replace("+00:00", "Z")
    events = [{"tenant": tenant, "event": "click", "timestamp": sent_at.isoformat(), "user_id": i % 5,
               "country": "FR" if i % 3 else "DE"} for i in range(37)]
    opened_before = api.get("/stats").json()["counters"].get("live_streams_open", 0)
    params = {"tenant": tenant, "metric": "clicks", "minutes": "5", "group_by": "country"}
    seen: list[dict[str, Any]] = []
    with api.stream("GET", "/v1/live", params=params, timeout=httpx.Timeout(30, read=15)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = sse_events(response)
        assert next(stream) == ("retry", 2000)
        first_update = next(data for kind, data in stream if kind == "update")
        assert first_update["minutes"] == 5 and first_update["group_by"] == ["country"]
        assert point(first_update, key) in (None, 0)  # nothing sent yet
        assert api.post("/events", json=events, params={"sync": "true"}).json()["accepted"] == 37
        posted = time.monotonic()
        deadline = time.monotonic() + 60
        for kind, data in stream:
            if kind != "update":
                continue
            seen.append(data)
            if point(data, key) == 37 or time.monotonic() > deadline:
                break
        print(f"events sent → seen on the live stream: {time.monotonic() - posted:.1f} s ({len(seen)} updates)")
        newest = seen[-1]
        counts = {s["group"]["country"]: dict(map(tuple, s["points"]))[key] for s in newest["series"]}
        assert counts == {"FR": 24, "DE": 13}  # the ground truth of what was sent
        points = newest["series"][0]["points"]
        assert len(points) in (5, 6) and points[-1][0] >= key  # the last 5 minutes, the in-flight one last
        assert all(a[0] < b[0] for a, b in zip(points, points[1:], strict=False))
    # the stream ends when the client goes away
    wait_for(lambda: api.get("/stats").json()["counters"].get("live_streams_open", 0) == opened_before, 15,
             "the server to close the live stream")


def test_many_viewers_of_one_metric_cost_about_one_query_per_interval(settings: Settings, tenant: str) -> None:
    viewers, updates_each = 30, 3

    async def watch(client: httpx.AsyncClient) -> int:
        got = 0
        async with client.stream("GET", "/v1/live", params={"tenant": tenant, "metric": "events"}) as response:
            async for line in response.aiter_lines():
                if line.startswith("event: update"):
                    got += 1
                    if got == updates_each:
                        return got
        return got

    async def run() -> tuple[list[int], int, int]:
        limits = httpx.Limits(max_connections=viewers + 5)
        async with httpx.AsyncClient(base_url=settings.api_url, timeout=60, limits=limits,
                                     headers=bearer_headers(settings.admin_key)) as client:
            before = (await client.get("/stats")).json()["hot_queries"]
            counts = await asyncio.gather(*(watch(client) for _ in range(viewers)))
            after = (await client.get("/stats")).json()["hot_queries"]
            return counts, before, after

    started = time.monotonic()
    counts, before, after = asyncio.run(run())
    elapsed = time.monotonic() - started
    assert counts == [updates_each] * viewers
    # 90 updates were sent; the shared cache entry means about one query per interval, not one per viewer
    intervals = elapsed / settings.live_interval_seconds
    print(f"{viewers} viewers × {updates_each} updates in {elapsed:.1f} s: {after - before} hot-tier queries")
    assert after - before <= intervals + 3, (after - before, intervals)


def test_a_bad_live_question_is_refused_before_the_stream_starts(api: httpx.Client, tenant: str) -> None:
    response = api.get("/v1/live", params={"tenant": tenant, "metric": "visits"})
    assert response.status_code == 400 and "unknown metric 'visits'" in response.json()["error"]
    response = api.get("/v1/live", params={"tenant": tenant, "metric": "events", "filter": "city:Paris"})
    assert response.status_code == 400 and "unknown filter field 'city'" in response.json()["error"]


def test_streams_per_key_are_capped_and_a_closed_stream_frees_its_place(api: httpx.Client, settings: Settings,
                                                                        tenant: str) -> None:
    assert api.post("/v1/admin/tenants", json={"id": tenant, "name": tenant}).status_code == 201
    key = api.post(f"/v1/admin/tenants/{tenant}/keys", json={}).json()["key"]
    cap, wanted = settings.live_max_streams_per_key, 50
    assert cap < wanted

    async def run() -> tuple[list[int], int, int]:
        limits = httpx.Limits(max_connections=wanted + 5)
        async with httpx.AsyncClient(base_url=settings.api_url, timeout=60, limits=limits,
                                     headers=bearer_headers(key)) as client:
            request = client.build_request("GET", "/v1/live", params={"metric": "events"})
            responses = await asyncio.gather(*(client.send(request, stream=True) for _ in range(wanted)))
            statuses = [r.status_code for r in responses]
            refused = next(r for r in responses if r.status_code == 429)
            await refused.aread()
            assert "LAKEHOUSE_LIVE_MAX_STREAMS_PER_KEY" in refused.json()["error"]
            assert int(refused.headers["Retry-After"]) >= 1
            for response in responses:
                await response.aclose()
            await asyncio.sleep(1.5)  # the server notices the closed streams
            again = await client.send(client.build_request("GET", "/v1/live", params={"metric": "events"}),
                                      stream=True)
            after_close = again.status_code
            await again.aclose()
            other = await client.get("/v1/live", params={"metric": "nope"})  # a bad question: 400, not 429
            return statuses, after_close, other.status_code

    statuses, after_close, other = asyncio.run(run())
    assert statuses.count(200) == cap and statuses.count(429) == wanted - cap, statuses
    assert after_close == 200 and other == 400
