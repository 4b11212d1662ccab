"""GET /v1/live: a Server-Sent Events stream whose updates carry the newest minutes as the truth says."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.tenancy.auth import bearer_headers
from tests.component.conftest import ADMIN_KEY, ROUTES
from tests.component.harness import SseStream, read_sse
from tests.component.seed import Seeded, by_bucket, floor, within


def _stream(client: TestClient, app: FastAPI, params: dict[str, Any], headers: dict[str, str] | None = None,
            count: int = 2) -> SseStream:
    return client.portal.call(read_sse, ROUTES.wrap(app), "/v1/live", params,
                              headers if headers is not None else bearer_headers(ADMIN_KEY), count)


def test_each_update_holds_every_minute_of_the_window_with_the_events_sent(
        client: TestClient, app: FastAPI, data: dict[str, Seeded]) -> None:
    seeded = data["acme"]
    stream = _stream(client, app, {"tenant": "acme", "metric": "events", "minutes": 60, "filter": "country:US"})
    assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    (kind, update), (kind2, _) = stream.events
    assert (kind, kind2) == ("update", "update")
    (series,) = update["series"]
    points = dict(series["points"])
    assert update["sources"] == ["hot:rollups_1m"]
    first, at = datetime.fromisoformat(update["from"]), datetime.fromisoformat(update["at"])
    minutes = [datetime.fromisoformat(m) for m in points]
    assert minutes == [first + timedelta(minutes=i) for i in range(len(minutes))]  # every minute, in order
    assert first <= at - timedelta(minutes=60) and minutes[-1] == floor(at, "minute")  # the in-flight one last
    truth = by_bucket(within(seeded.hot, first, seeded.now + timedelta(minutes=1), country="US"), "minute", "events")
    assert {k: v for k, v in points.items() if v} == truth
    assert all(points[minute] == 0 for minute in points if minute not in truth)


def test_a_bad_question_is_refused_before_the_stream_starts(client: TestClient, app: FastAPI) -> None:
    stream = _stream(client, app, {"metric": "bogus"}, count=0)
    assert stream.status == 400 and stream.events == []
    refused = _stream(client, app, {"metric": "events"}, headers={}, count=0)
    assert refused.status == 401


def test_a_failed_refresh_is_an_error_event_and_the_stream_goes_on(down_client: TestClient) -> None:
    app = down_client.app  # the app over the unreachable hot node, wrapped by the route log
    stream = down_client.portal.call(read_sse, app, "/v1/live", {"metric": "events"}, bearer_headers(ADMIN_KEY), 2)
    assert [kind for kind, _ in stream.events] == ["error", "error"]
    assert "not reachable" in stream.events[0][1]["error"]
