"""``compare=previous_period``: the range and the one of equal length before it, in one cached answer,
checked against the seeded events."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.component.seed import Seeded, by_bucket, every_bucket, floor, iso, total, within, zero_filled


def _change(now: float, before: float) -> dict[str, Any]:
    return {"current": now, "previous": before, "change": now - before,
            "change_percent": round((now - before) / before * 100, 2) if before else None}


def test_a_series_answers_its_previous_period_and_the_change_of_its_totals(
        client: TestClient, data: dict[str, Seeded]) -> None:
    seeded = data["acme"]
    start, end = floor(seeded.now - timedelta(hours=20), "hour"), floor(seeded.now - timedelta(hours=2), "hour")
    params = {"tenant": "acme", "metric": "events", "granularity": "hour", "from": iso(start), "to": iso(end),
              "compare": "previous_period"}
    first = client.get("/v1/timeseries", params=params)
    assert first.status_code == 200, first.text
    body = first.json()
    before_start = start - (end - start)
    previous = body["previous"]
    assert (previous["from"], previous["to"]) == (iso(before_start), iso(start))
    now_events, before_events = within(seeded.hot, start, end), within(seeded.hot, before_start, start)
    assert now_events and before_events, "the seeded ages must fall in both periods"
    truth = zero_filled(by_bucket(before_events, "hour", "events"), every_bucket(before_start, start, "hour"))
    assert dict(previous["series"][0]["points"]) == truth
    assert body["totals"] == {"events": _change(len(now_events), len(before_events))}
    plain = client.get("/v1/timeseries", params={k: v for k, v in params.items() if k != "compare"}).json()
    assert "previous" not in plain and plain["series"] == body["series"]


def test_totals_of_several_metrics_compare_unique_users_over_the_whole_period(
        client: TestClient, data: dict[str, Seeded]) -> None:
    seeded = data["globex"]
    start, end = seeded.now - timedelta(hours=30), seeded.now
    answer = client.post("/v1/query", params={"tenant": "globex", "compare": "previous_period"}, json={
        "metrics": ["events", "unique_users", "revenue"], "dimensions": ["country"],
        "from": iso(start), "to": iso(end)})
    assert answer.status_code == 200, answer.text
    totals = answer.json()["totals"]
    now_events, before_events = within(seeded.hot, start, end), within(seeded.hot, start - (end - start), start)
    for metric in ("events", "unique_users"):
        assert totals[metric] == _change(total(now_events, metric), total(before_events, metric))
    assert totals["revenue"]["current"] == pytest.approx(total(now_events, "revenue"))
    assert totals["revenue"]["previous"] == pytest.approx(total(before_events, "revenue"))


def test_the_dashboard_compares_every_widget_with_its_previous_period(
        client: TestClient, data: dict[str, Seeded]) -> None:
    seeded = data["acme"]
    answer = client.get("/v1/dashboards/overview/data",
                        params={"tenant": "acme", "range": "24h", "compare": "previous_period"})
    assert answer.status_code == 200, answer.text
    widgets = {w["id"]: w for w in answer.json()["widgets"]}
    totals = widgets["totals"]
    start, end = datetime.fromisoformat(totals["from"]), datetime.fromisoformat(totals["to"])
    now_events = within(seeded.hot, start, end)
    before_events = within(seeded.hot, start - (end - start), start)
    assert totals["totals"]["events"] == _change(len(now_events), len(before_events))
    line = widgets["events_over_time"]
    assert len(line["previous"]["rows"]) == len(line["rows"])  # both periods zero-filled, bucket for bucket
    assert line["previous"]["to"] == line["from"]


@pytest.mark.parametrize(("path", "params", "status", "message"), [
    ("/v1/timeseries", {"metric": "events", "compare": "last_year"}, 400, "unknown compare 'last_year'"),
    ("/v1/dashboards/overview/data", {"compare": "yesterday"}, 400, "unknown compare 'yesterday'"),
    ("/v1/dashboards/overview/data", {"tz": "Nowhere/Land"}, 422, "IANA"),
])
def test_an_unknown_comparison_or_zone_says_what_is_accepted(client: TestClient, path: str, params: dict[str, str],
                                                             status: int, message: str) -> None:
    answer = client.get(path, params={"tenant": "acme", **params})
    assert answer.status_code == status and message in answer.json()["error"]
