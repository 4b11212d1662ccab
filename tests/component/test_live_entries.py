"""A cached answer of an open range is fresh until the stream writes again (serving/hot_writes.py), on a real Redis
and the tier's embedded hot store.

The open TTL is set to a minute here, so only the write mark can explain a fresh answer within it: before a write a
repeated question is a cache hit; after one micro-batch lands as the stream writes it (``lay_hot``), the answer
shows the new event within a second, while the entry's TTL had most of its minute to run.
"""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from common.hot_store import HotStore
from common.settings import Settings
from serving.app import build_serving, create_app
from serving.hot_writes import packed_mark, superseded
from serving.tenancy.auth import bearer_headers
from tests.component.conftest import ADMIN_KEY
from tests.component.harness import InMemoryPublisher
from tests.component.seed import lay_hot

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server")

TENANT = "live-writes"


def _total(client: TestClient, params: dict[str, str]) -> tuple[float, str]:
    answer = client.get("/v1/timeseries", params=params)
    assert answer.status_code == 200, answer.text
    series = answer.json()["series"]
    return sum(p[1] for p in series[0]["points"]) if series else 0, answer.headers["x-cache"]


def test_an_open_answer_is_cached_until_the_stream_writes_then_refreshed(settings: Settings, hot: HotStore,
                                                                         redis_url: str) -> None:
    changed = settings.model_copy(update={"redis_url": redis_url, "cache_open_ttl_seconds": 60.0,
                                          "cache_max_stale_seconds": 60.0, "cache_write_poll_seconds": 0.02})
    serving = build_serving(changed, hot, publisher=InMemoryPublisher())
    page = f"/live/{uuid.uuid4().hex[:12]}"
    params = {"metric": "events", "tenant": TENANT, "range": "15m", "filter": f"page:{page}"}
    with TestClient(create_app(serving), headers=bearer_headers(ADMIN_KEY)) as client:
        time.sleep(0.1)  # the watcher's first poll
        assert serving.cache.writes is not None and serving.cache.writes.mark != 0, "embedded chDB has a counter"
        assert _total(client, params) == (0, "miss")
        assert _total(client, params) == (0, "hit"), "no write since: the entry stands"

        now = datetime.now(UTC).replace(microsecond=0)
        lay_hot(hot, [{"tenant": TENANT, "event": "page_view", "timestamp": now, "event_id": uuid.uuid4().hex,
                       "user_id": "u1", "page": page, "country": "US", "device": "mobile", "revenue": None,
                       "properties": "", "received_at": now}])
        written = time.monotonic()
        seen: list[tuple[float, str]] = []
        while time.monotonic() - written < 5:
            seen.append(_total(client, params))
            if seen[-1][0] == 1:
                break
            time.sleep(0.02)
        took = time.monotonic() - written
    assert seen[-1][0] == 1, f"the new event never showed within 5 s of a 60 s TTL: {seen[:3]} … {seen[-3:]}"
    assert took < 2, took
    assert {how for _, how in seen} <= {"hit", "stale", "miss", "coalesced"}
    assert serving.cache.stats.superseded >= 1


def test_write_marks_order_within_an_incarnation_only() -> None:
    incarnation = 7 << 64
    old, new = packed_mark(incarnation | 4), packed_mark(incarnation | 5)
    assert superseded(old, new) and not superseded(new, old) and not superseded(new, new)
    assert superseded(new, packed_mark((8 << 64) | 0)), "a restarted hot node supersedes every entry of the old one"
    assert not superseded(old, packed_mark(None)) and not superseded(packed_mark(None), new), "unknown: the TTL rules"
    assert packed_mark(0) != 0, "the first count is a mark too"

