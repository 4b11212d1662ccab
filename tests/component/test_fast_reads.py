"""The fast path of cached GET answers (serving/fast_reads.py) answers exactly what the route answers.

The rest of the component tier runs without Redis (every answer uncached), so this module starts its own
``redis-server`` (the ``redis_url`` fixture) for an app over the tier's hot store. The truth is the full route:
the same requests through an app whose fast path is off.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from common.hot_store import HotStore
from common.settings import Settings
from serving.app import build_serving, create_app
from serving.context import Serving
from serving.tenancy.auth import bearer_headers
from tests.component.conftest import ADMIN_KEY
from tests.component.harness import InMemoryPublisher
from tests.component.seed import Seeded

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server")


def _app(settings: Settings, hot: HotStore, redis_url: str, fast: bool) -> tuple[TestClient, Serving]:
    changed = settings.model_copy(update={"redis_url": redis_url, "fast_cached_reads": fast})
    serving = build_serving(changed, hot, publisher=InMemoryPublisher())
    return TestClient(create_app(serving), headers=bearer_headers(ADMIN_KEY)), serving


@pytest.fixture(scope="module")
def apps(settings: Settings, hot: HotStore, redis_url: str, data: dict[str, Seeded]
         ) -> Iterator[tuple[TestClient, Serving, TestClient]]:
    """(the app with the fast path, its Serving, the same app with it off): one Redis, one hot store."""
    fast, serving = _app(settings, hot, redis_url, True)
    slow, _ = _app(settings, hot, redis_url, False)
    with fast, slow:
        yield fast, serving, slow


def _window(data: dict[str, Seeded], tenant: str) -> dict[str, str]:
    end = data[tenant].now.replace(second=0) + timedelta(minutes=1)
    return {"from": (end - timedelta(hours=6)).isoformat(), "to": end.isoformat()}


def _counts(exposition: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines()
            if line and not line.startswith("#")}


def _same(a, b) -> None:
    assert (a.status_code, a.content, a.headers.get("content-type")) == (b.status_code, b.content,
                                                                          b.headers.get("content-type"))


def test_a_repeated_url_is_answered_by_the_fast_path_with_the_routes_answer(apps, data) -> None:
    fast, serving, slow = apps
    params = {"metric": "events", "by": "country", "tenant": "acme", **_window(data, "acme")}
    first = fast.get("/v1/breakdown", params=params)  # through the route: computed, then filed
    assert first.status_code == 200 and first.headers["x-cache"] in ("miss", "hit")
    before, scraped = serving.fast_reads.answered, _counts(fast.get("/metrics").text)
    again = fast.get("/v1/breakdown", params=params)
    after = _counts(fast.get("/metrics").text)
    truth = slow.get("/v1/breakdown", params=params)  # the route's answer of the same entry
    assert serving.fast_reads.answered == before + 1
    for name in ('lakehouse_query_duration_seconds_count{endpoint="/v1/breakdown",tier="cache"}',
                 'lakehouse_cache_requests_total{outcome="hit"}',
                 'lakehouse_http_requests_total{method="GET",route="/v1/breakdown",status="200"}'):
        assert after.get(name, 0) - scraped.get(name, 0) == 1, name  # counted as when the route answers
    assert again.headers["x-cache"] == truth.headers["x-cache"] == "hit"
    _same(again, truth)
    assert again.headers["x-request-id"]  # still through the access-log middleware
    assert again.json()["rows"] == first.json()["rows"]


def test_a_bad_parameter_is_never_answered_from_the_cache(apps, data) -> None:
    fast, serving, slow = apps
    window = _window(data, "acme")
    for params in ({"metric": "events", "by": "country", "tenant": "acme", "limit": "0", **window},  # 422
                   {"metric": "no_such_metric", "by": "country", "tenant": "acme", **window},  # 400
                   {"metric": "events", "by": "country", "tenant": "acme", "from": "yesterday"}):  # 422
        before = serving.fast_reads.answered
        answers = [fast.get("/v1/breakdown", params=params) for _ in range(3)]
        truth = slow.get("/v1/breakdown", params=params)
        assert truth.status_code in (400, 422)
        for answer in answers:
            _same(answer, truth)
        assert serving.fast_reads.answered == before


def test_keys_and_tenants_are_checked_before_a_cached_answer(apps, data, keys) -> None:
    fast, serving, slow = apps
    params = {"metric": "events", "granularity": "hour", "tenant": "globex", **_window(data, "globex")}
    assert fast.get("/v1/timeseries", params=params).status_code == 200
    assert fast.get("/v1/timeseries", params=params).status_code == 200  # now filed for the admin key
    for headers in ({"Authorization": "Bearer not-a-key"}, bearer_headers(keys["acme"]), {"Authorization": ""}):
        answer = fast.get("/v1/timeseries", params=params, headers=headers)
        truth = slow.get("/v1/timeseries", params=params, headers=headers)
        assert answer.status_code in (401, 403)
        _same(answer, truth)
    # acme's key without ?tenant= asks acme's data: never globex's entry filed for the admin URL
    own = {k: v for k, v in params.items() if k != "tenant"}
    by_key = [fast.get("/v1/timeseries", params=own, headers=bearer_headers(keys["acme"])) for _ in range(2)]
    assert {r.json()["tenant"] for r in by_key} == {"acme"}
    _same(by_key[1], slow.get("/v1/timeseries", params=own, headers=bearer_headers(keys["acme"])))


def test_a_range_ending_now_is_not_filed(apps, data) -> None:
    """`from` without `to` ends now: its cache key changes with time, so the route answers every time."""
    fast, serving, _ = apps
    start = (data["acme"].now - timedelta(hours=2)).isoformat()
    params = {"metric": "events", "by": "device", "tenant": "acme", "from": start}
    before = serving.fast_reads.answered
    for _ in range(3):
        assert fast.get("/v1/breakdown", params=params).status_code == 200
    assert serving.fast_reads.answered == before


def test_the_url_table_keeps_the_most_recently_asked_within_its_bound(apps, data) -> None:
    """A dashboard whose ``to`` moves with the clock files a new URL at every refresh: the table must stay within
    its bound, dropping the URL asked least recently, not the one filed first."""
    fast, serving, _ = apps
    end = datetime.fromisoformat(_window(data, "acme")["to"])
    table, bound = serving.fast_reads, serving.fast_reads.max_remembered
    urls = {name: {"metric": "events", "by": "device", "tenant": "acme", "from": (end - timedelta(hours=3)).isoformat(),
                   "to": (end - timedelta(minutes=minutes)).isoformat()} for name, minutes in (("a", 3), ("b", 2),
                                                                                              ("c", 1))}

    def fast_answers(name: str) -> bool:
        before = table.answered
        assert fast.get("/v1/breakdown", params=urls[name]).status_code == 200
        return table.answered == before + 1

    table.max_remembered = 2
    try:
        assert not fast_answers("a") and not fast_answers("b")  # each filed by the route
        assert fast_answers("a")  # a is now the most recently asked
        assert not fast_answers("c")  # filed: b, asked least recently, makes room
        assert table.remembered == 2
        assert fast_answers("a") and fast_answers("c")
        assert not fast_answers("b")  # dropped: the route answers (and files it again)
        assert table.remembered == 2
    finally:
        table.max_remembered = bound


def test_a_restated_range_is_recomputed_not_served_from_the_fast_path(apps, data, hot) -> None:
    fast, serving, slow = apps
    params = {"metric": "events", "n": "3", "by": "page", "tenant": "acme", **_window(data, "acme")}
    for _ in range(2):
        assert fast.get("/v1/topn", params=params).status_code == 200
    assert fast.get("/v1/topn", params=params).headers["x-cache"] == "hit"
    end = datetime.fromisoformat(params["to"])
    dropped = asyncio.run(_drop(serving, end))
    assert dropped >= 1
    before = serving.fast_reads.answered
    after = fast.get("/v1/topn", params=params)
    assert after.headers["x-cache"] == "miss" and serving.fast_reads.answered == before
    _same(after, slow.get("/v1/topn", params=params))


async def _drop(serving: Serving, end: datetime) -> int:
    from serving.cache import QueryCache

    cache = QueryCache(serving.settings.redis_url)  # another client, as the restatement listener's would be
    try:
        return await cache.drop_ranges([("acme", end - timedelta(hours=1), end)])
    finally:
        await cache.close()


def test_a_rate_limited_key_is_charged_once_per_request(apps, data, client) -> None:
    fast, serving, slow = apps
    issued = client.post("/v1/admin/tenants/acme/keys", json={"rate_per_second": 0.01, "burst": 4})
    assert issued.status_code == 201, issued.text
    headers = bearer_headers(issued.json()["key"])
    serving.auth.invalidate()  # the key was made through another app: this one reads the table again
    params = {"metric": "events", "granularity": "hour", **_window(data, "acme")}
    statuses = [fast.get("/v1/timeseries", params=params, headers=headers).status_code for _ in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]  # 2 through the route and 2 fast, then the bucket is empty
    assert serving.fast_reads.answered >= 2  # (the bucket refills at 0.01/s: no refill within the test)


def test_concurrent_lookups_of_a_key_share_one_redis_get(redis_url: str) -> None:
    from serving.cache import QueryCache

    async def scenario() -> tuple[list, list, list]:
        cache = QueryCache(redis_url)
        try:
            async def compute() -> bytes:
                return b'{"answer": 1}'

            await cache.get_or_compute("lakehouse:q:v1:test-fresh", 60, compute)  # stored, fresh for ~60 s
            found = await asyncio.gather(*(cache.fresh("lakehouse:q:v1:test-fresh") for _ in range(20)))
            missing = await asyncio.gather(*(cache.fresh("lakehouse:q:v1:never-stored") for _ in range(5)))
            stale = []
            await cache.get_or_compute("lakehouse:q:v1:test-stale", 0.001, compute, stale_s=30)
            await asyncio.sleep(0.01)
            stale.append(await cache.fresh("lakehouse:q:v1:test-stale"))  # past its fresh time: the long way
            return found, missing, stale
        finally:
            await cache.close()

    found, missing, stale = asyncio.run(scenario())
    assert sorted(how for _, how in found) == ["coalesced"] * 19 + ["hit"]
    assert {body for body, _ in found} == {b'{"answer": 1}'}
    assert missing == [None] * 5 and stale == [None]
