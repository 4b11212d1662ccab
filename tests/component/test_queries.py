"""Dashboard queries over HTTP against the ground truth of the seeded events, in every tier, and their errors."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from tests.component.seed import (
    Seeded,
    by_bucket,
    by_dimension,
    every_bucket,
    floor,
    iso,
    total,
    within,
    zero_filled,
)


def _get(client: TestClient, path: str, **params: Any) -> dict[str, Any]:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _series(body: dict[str, Any]) -> dict[tuple, dict[str, float]]:
    return {tuple(s["group"].values()): dict(s["points"]) for s in body["series"]}


def test_the_catalog_names_what_can_be_asked(client: TestClient) -> None:
    catalog = _get(client, "/v1/catalog")
    assert {"events", "page_views", "revenue", "unique_users"} <= set(catalog["metrics"])
    assert catalog["dimensions"] == ["event", "country", "device", "page"]
    assert catalog["tiers"] == ["auto", "hot", "warm", "cold"]


def test_a_minute_series_per_country_equals_the_events_sent(client: TestClient, data: dict[str, Seeded]) -> None:
    seeded = data["acme"]
    start = floor(seeded.now - timedelta(minutes=70), "minute")
    body = _get(client, "/v1/timeseries", tenant="acme", metric="page_views", granularity="minute",
                group_by="country", filter="device:mobile", **{"from": iso(start), "to": iso(seeded.now)})
    assert body["sources"] == ["hot:rollups_1m"] and body["granularity"] == "minute"
    events = within(seeded.hot, start, seeded.now, device="mobile")
    minutes = every_bucket(start, seeded.now, "minute")
    truth = {(country,): zero_filled(by_bucket([e for e in events if e["country"] == country], "minute",
                                               "page_views"), minutes)
             for country in {e["country"] for e in events}}
    assert _series(body) == truth


def test_an_hourly_series_of_unique_users_equals_the_distinct_users_sent(
        client: TestClient, data: dict[str, Seeded]) -> None:
    seeded = data["globex"]
    start = floor(seeded.now - timedelta(days=2), "hour")
    body = _get(client, "/v1/timeseries", tenant="globex", metric="unique_users", granularity="hour",
                **{"from": iso(start), "to": iso(seeded.now)})
    assert body["sources"] == ["hot:rollups_1h"]
    truth = by_bucket(within(seeded.hot, start, seeded.now), "hour", "unique_users")
    assert _series(body) == {(): zero_filled(truth, every_bucket(start, seeded.now, "hour"), None)}  # gaps


def test_a_breakdown_with_drill_down_filters_equals_the_truth_and_echoes_the_filters(
        client: TestClient, data: dict[str, Seeded]) -> None:
    seeded = data["acme"]
    start = seeded.now - timedelta(days=1)
    body = _get(client, "/v1/breakdown", tenant="acme", metric="events", by="page",
                filter=["country:US|DE", "device!=desktop"], **{"from": iso(start), "to": iso(seeded.now)})
    events = [e for e in within(seeded.hot, start, seeded.now, device="mobile") if e["country"] in ("US", "DE")]
    assert {row["page"]: row["value"] for row in body["rows"]} == by_dimension(events, "page", "events")
    assert [row["value"] for row in body["rows"]] == sorted((row["value"] for row in body["rows"]), reverse=True)
    assert body["filters"] == [["country", "in", ["US", "DE"]], ["device", "!=", ["desktop"]]]


def test_top_n_ranks_the_largest_values(client: TestClient, data: dict[str, Seeded]) -> None:
    seeded = data["acme"]
    start = seeded.now - timedelta(days=2)
    body = _get(client, "/v1/topn", tenant="acme", metric="revenue", by="country", n=2,
                **{"from": iso(start), "to": iso(seeded.now)})
    truth = sorted(by_dimension(within(seeded.hot, start, seeded.now), "country", "revenue").values(), reverse=True)
    assert [row["rank"] for row in body["rows"]] == [1, 2]
    assert [row["value"] for row in body["rows"]] == pytest.approx(truth[:2])


def test_an_adhoc_query_groups_several_metrics_as_asked(client: TestClient, data: dict[str, Seeded]) -> None:
    seeded = data["globex"]
    start = seeded.now - timedelta(hours=12)
    answer = client.post("/v1/query", params={"tenant": "globex"}, json={
        "metrics": ["events", "purchases", "revenue"], "dimensions": ["device"],
        "from": iso(start), "to": iso(seeded.now), "order_by": [{"field": "device", "direction": "asc"}]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["columns"] == ["device", "events", "purchases", "revenue"]
    events = within(seeded.hot, start, seeded.now)
    devices = sorted({e["device"] for e in events})
    truth = [[d, *(total([e for e in events if e["device"] == d], m) for m in ("events", "purchases", "revenue"))]
             for d in devices]
    assert [row[:3] for row in body["rows"]] == [row[:3] for row in truth]
    assert [row[3] for row in body["rows"]] == pytest.approx([row[3] for row in truth])


def test_the_warm_tier_answers_from_the_lakes_hourly_rollups(client: TestClient, data: dict[str, Seeded]) -> None:
    seeded = data["acme"]
    start, end = floor(seeded.now - timedelta(days=320), "day"), floor(seeded.now - timedelta(days=95), "day")
    answer = client.post("/v1/query", params={"tenant": "acme"}, json={
        "metrics": ["events", "unique_users"], "dimensions": ["country"], "tier": "warm",
        "from": iso(start), "to": iso(end)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["sources"] == ["warm:rollups_hourly"]
    events = within(seeded.lake, start, end)
    assert events, "the seeded warm ages must fall in the range"
    assert {row[0]: row[1:] for row in body["rows"]} == {
        country: [total(members, "events"), total(members, "unique_users")]
        for country in {e["country"] for e in events}
        if (members := [e for e in events if e["country"] == country])}


def test_a_three_year_daily_series_joins_the_cold_and_hot_tiers_exactly(
        client: TestClient, data: dict[str, Seeded]) -> None:
    seeded = data["globex"]
    body = _get(client, "/v1/timeseries", tenant="globex", metric="events", range="3y", granularity="day")
    assert body["sources"] == ["cold:rollups_daily", "hot:rollups_1h"]
    start, end = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])  # the request's clock:
    truth = by_bucket(within(seeded.all, start, seeded.now + timedelta(seconds=1)), "day", "events")  # a day later
    assert _series(body) == {(): zero_filled(truth, every_bucket(start, end, "day"))}  # than the seed's at midnight


def test_totals_over_every_tier_add_up_and_flag_unique_users_as_an_upper_bound(
        client: TestClient, data: dict[str, Seeded]) -> None:
    seeded = data["acme"]
    answer = client.post("/v1/query", params={"tenant": "acme"},
                         json={"metrics": ["events", "revenue", "unique_users"], "range": "3y"})
    body = answer.json()
    assert body["sources"] == ["cold:rollups_daily", "warm:rollups_hourly", "hot:rollups_1h"]
    assert body["approximate"] == ["unique_users"]
    everything = within(seeded.all, datetime.fromisoformat(body["from"]), seeded.now + timedelta(seconds=1))
    (events, revenue, users), = body["rows"]
    assert events == total(everything, "events") and revenue == pytest.approx(total(everything, "revenue"))
    assert users >= total(everything, "unique_users")


@pytest.mark.parametrize(("path", "params", "columns"), [
    ("/v1/timeseries", {"metric": "events", "group_by": "device"}, ["bucket", "device", "events"]),
    ("/v1/breakdown", {"metric": "events", "by": "country"}, ["country", "events"]),
    ("/v1/topn", {"metric": "events", "by": "page", "n": 3}, ["rank", "page", "events"]),
])
def test_every_query_downloads_as_csv_equal_to_its_json(client: TestClient, data: dict[str, Seeded], path: str,
                                                        params: dict[str, Any], columns: list[str]) -> None:
    params = {**params, "tenant": "acme", "range": "6h"}
    as_json = _get(client, path, **params)
    download = client.get(path, params={**params, "format": "csv"})
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert 'attachment; filename="' in download.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows[0] == columns
    expected = (sum(len(s["points"]) for s in as_json["series"]) if "series" in as_json else len(as_json["rows"]))
    assert len(rows) - 1 == expected > 0


def test_an_adhoc_query_downloads_as_csv_when_asked_by_accept_header(client: TestClient) -> None:
    body = {"metrics": ["events"], "dimensions": ["event"], "range": "1d"}
    as_json = client.post("/v1/query", params={"tenant": "acme"}, json=body).json()
    download = client.post("/v1/query", params={"tenant": "acme"}, json=body, headers={"Accept": "text/csv"})
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows == [as_json["columns"], *([str(v) for v in row] for row in as_json["rows"])]


@pytest.mark.parametrize(("path", "params", "message"), [
    ("/v1/timeseries", {"metric": "bogus"}, "unknown metric 'bogus'"),
    ("/v1/timeseries", {"metric": "events", "group_by": "city"}, "unknown dimension 'city'"),
    ("/v1/timeseries", {"metric": "events", "filter": "country"}, "is not dimension:value"),
    ("/v1/timeseries", {"metric": "events", "range": "forever"}, "is not like 15m"),
    ("/v1/timeseries", {"metric": "events", "range": "2y", "granularity": "minute"}, "minute buckets"),
    ("/v1/breakdown", {"metric": "events", "by": "page", "from": "2026-01-02T00:00:00Z",
                       "to": "2026-01-01T00:00:00Z"}, "the range is empty"),
    ("/v1/topn", {"metric": "events", "by": "page", "tier": "lukewarm"}, "unknown tier"),
])
def test_a_question_that_cannot_be_answered_is_a_400_that_says_why(client: TestClient, path: str,
                                                                   params: dict[str, Any], message: str) -> None:
    answer = client.get(path, params={"tenant": "acme", **params})
    assert answer.status_code == 400 and message in answer.json()["error"]


def test_malformed_parameters_and_bodies_are_422_and_an_unknown_format_400(client: TestClient) -> None:
    assert client.get("/v1/topn", params={"metric": "events", "by": "page", "n": 0}).status_code == 422
    assert client.get("/v1/breakdown", params={"metric": "events"}).status_code == 422  # `by` is required
    assert client.post("/v1/query", json={"metrics": []}).status_code == 422
    assert client.post("/v1/query", json={"metrics": ["events"], "limit": 0}).status_code == 422
    unknown = client.get("/v1/timeseries", params={"metric": "events", "format": "xml"})
    assert unknown.status_code == 400 and "format 'xml'" in unknown.json()["detail"]
    bad_filter = client.post("/v1/query", json={"metrics": ["events"], "filters": [{"field": "city", "value": "x"}]})
    assert bad_filter.status_code == 400 and "unknown filter field 'city'" in bad_filter.json()["error"]


def test_a_tenant_key_reads_its_own_tenant_only(client: TestClient, keys: dict[str, str]) -> None:
    params = {"metric": "events", "range": "3d"}
    own = client.get("/v1/timeseries", params=params, headers={"Authorization": f"Bearer {keys['acme']}"})
    assert own.status_code == 200 and own.json()["tenant"] == "acme"
    assert own.json()["series"] == client.get("/v1/timeseries", params={**params, "tenant": "acme"}).json()["series"]
    other = client.get("/v1/timeseries", params={**params, "tenant": "globex"},
                       headers={"Authorization": "", "X-API-Key": keys["acme"]})
    assert other.status_code == 403 and "cannot access tenant 'globex'" in other.json()["error"]
    assert client.get("/v1/catalog", headers={"Authorization": ""}).status_code == 200  # the catalogue is open
    assert client.get("/v1/timeseries", params=params, headers={"Authorization": ""}).status_code == 401


def test_the_admin_key_names_one_tenant_at_a_time(client: TestClient) -> None:
    answer = client.get("/v1/timeseries", params={"metric": "events", "tenant": ["acme", "globex"]})
    assert answer.status_code == 400 and "name one tenant" in answer.json()["error"]


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("GET", "/v1/timeseries", {"params": {"metric": "events"}}),
    ("GET", "/v1/breakdown", {"params": {"metric": "events", "by": "country"}}),
    ("GET", "/v1/topn", {"params": {"metric": "events", "by": "page"}}),
    ("POST", "/v1/query", {"json": {"metrics": ["events"]}}),
])
def test_a_query_past_its_timeout_is_a_504_that_says_what_to_change(slow_client: TestClient, method: str, path: str,
                                                                    kwargs: dict[str, Any]) -> None:
    answer = slow_client.request(method, path, **kwargs)
    assert answer.status_code == 504 and "longer than 0.2 s" in answer.json()["error"]


def test_queries_answer_503_while_the_hot_node_is_down(down_client: TestClient) -> None:
    answer = down_client.get("/v1/timeseries", params={"metric": "events"})
    assert answer.status_code == 503 and "not reachable" in answer.json()["error"]


NEW_YORK = "America/New_York"


@pytest.mark.parametrize(("ages_days", "sources"), [
    ((4, 0), ["hot:rollups_1h"]),  # the hot tier's hourly rollups
    ((330, 95), ["warm:rollups_hourly"]),  # the lake: hourly rows, never the UTC-day rollups
])
def test_a_new_york_day_series_equals_the_events_bucketed_by_new_york_dates(
        client: TestClient, data: dict[str, Seeded], ages_days: tuple[int, int], sources: list[str]) -> None:
    seeded = data["acme"]
    start, end = seeded.now - timedelta(days=ages_days[0]), seeded.now - timedelta(days=ages_days[1])
    body = _get(client, "/v1/timeseries", tenant="acme", metric="events", granularity="day", tz=NEW_YORK,
                **{"from": iso(start), "to": iso(end)})
    assert body["sources"] == sources and body["approximate"] == []
    first = datetime.fromisoformat(body["from"])
    local = first.astimezone(ZoneInfo(NEW_YORK))
    assert (local.hour, local.minute) == (0, 0)  # the range starts on a New York midnight
    events = within(seeded.all, first, end)
    assert events, "the seeded ages must fall in the range"
    truth = zero_filled(by_bucket(events, "day", "events", tz=NEW_YORK), every_bucket(first, end, "day", NEW_YORK))
    assert _series(body) == {(): truth}
    utc_days = _get(client, "/v1/timeseries", tenant="acme", metric="events", granularity="day",
                    **{"from": iso(start), "to": iso(end)})
    assert _series(utc_days) != _series(body)  # not the UTC days relabelled


def test_local_days_older_than_the_warm_tier_come_from_utc_days_and_say_so(client: TestClient) -> None:
    body = _get(client, "/v1/timeseries", tenant="acme", metric="events", granularity="day", tz=NEW_YORK,
                range="3y")
    assert body["sources"] == ["cold:rollups_daily", "warm:rollups_hourly", "hot:rollups_1h"]
    assert body["approximate"] == ["events"]


def test_fill_can_be_chosen_and_unique_users_default_to_gaps(client: TestClient, data: dict[str, Seeded]) -> None:
    seeded = data["globex"]
    start = floor(seeded.now - timedelta(hours=30), "hour")
    window = {"tenant": "globex", "granularity": "hour", "from": iso(start), "to": iso(seeded.now)}
    hours = every_bucket(start, seeded.now, "hour")
    events = within(seeded.hot, start, seeded.now)
    truth = by_bucket(events, "hour", "events")
    assert len(truth) < len(hours), "the seeded ages must leave empty hours"
    for fill, empty in (("auto", 0), ("zero", 0), ("null", None)):
        body = _get(client, "/v1/timeseries", metric="events", fill=fill, **window)
        assert _series(body) == {(): zero_filled(truth, hours, empty)}
    assert _series(_get(client, "/v1/timeseries", metric="events", fill="none", **window)) == {(): truth}
    users = _get(client, "/v1/timeseries", metric="unique_users", fill="zero", **window)
    assert _series(users) == {(): zero_filled(by_bucket(events, "hour", "unique_users"), hours, 0)}
    adhoc = client.post("/v1/query", params={"tenant": "globex"}, json={
        "metrics": ["events", "unique_users"], "granularity": "hour", "fill": "auto",
        "from": iso(start), "to": iso(seeded.now)}).json()
    assert [row[0] for row in adhoc["rows"]] == hours
    empty_hour = next(h for h in hours if h not in truth)
    assert next(row for row in adhoc["rows"] if row[0] == empty_hour)[1:] == [0, None]


@pytest.mark.parametrize("params", [{"tz": "Mars/Olympus_Mons"}, {"tz": "../etc/passwd"}, {"tz": ""}])
def test_a_time_zone_that_is_not_an_iana_name_is_a_422_that_says_what_to_send(
        client: TestClient, params: dict[str, str]) -> None:
    answer = client.get("/v1/timeseries", params={"tenant": "acme", "metric": "events", **params})
    assert answer.status_code == 422 and "IANA" in answer.json()["error"]
    posted = client.post("/v1/query", params={"tenant": "acme"}, json={"metrics": ["events"], **params})
    assert posted.status_code == 422 and "IANA" in posted.json()["error"]


def test_fill_with_a_limit_is_a_400_that_says_why(client: TestClient) -> None:
    answer = client.post("/v1/query", params={"tenant": "acme"}, json={
        "metrics": ["events"], "granularity": "hour", "fill": "zero", "limit": 3})
    assert answer.status_code == 400 and "fill needs a granularity" in answer.json()["error"]
