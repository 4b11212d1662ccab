"""Custom KPIs wherever a metric is: time series, breakdowns, top-N, ad-hoc queries, dashboards and alert rules,
each answer equal to the formula applied to the truth computed from the seeded events (x / 0 is null)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from serving.tenancy.auth import bearer_headers
from tests.component.conftest import ADMIN_KEY, ROUTES
from tests.component.harness import read_sse
from tests.component.seed import Seeded, every_bucket, floor, iso, total, within

TENANT = "acme"  # seeded: its events are in the hot tier and the lake
AOV = "kpi_aov"  # average order value
SHARE = "kpi_view_share"


def aov(events: list[dict[str, Any]]) -> float | None:
    purchases = total(events, "purchases")
    return total(events, "revenue") / purchases if purchases else None


def view_share(events: list[dict[str, Any]]) -> float | None:
    return 100 * total(events, "page_views") / len(events) if events else None


@pytest.fixture(scope="module")
def kpis(client: TestClient) -> Iterator[None]:
    params = {"tenant": TENANT}
    for name, formula in ((AOV, "revenue / purchases"), (SHARE, "100 * page_views / (events)")):
        made = client.post("/v1/kpis", params=params, json={"name": name, "formula": formula})
        assert made.status_code == 201, made.text
    yield
    for name in (AOV, SHARE):
        client.delete(f"/v1/kpis/{name}", params=params)


def _window(seeded: Seeded) -> tuple[Any, Any, dict[str, str]]:
    start = floor(seeded.now - timedelta(hours=30), "hour")
    end = seeded.now + timedelta(seconds=1)
    return start, end, {"from": iso(start), "to": iso(end)}


def _groups(events: list[dict[str, Any]], dimension: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        out.setdefault(e[dimension], []).append(e)
    return out


def test_a_kpi_time_series_is_the_formula_per_bucket_with_gaps_where_it_divides_by_zero(
        client: TestClient, data: dict[str, Seeded], kpis: None) -> None:
    seeded = data[TENANT]
    start, end, span = _window(seeded)
    got = client.get("/v1/timeseries", params={"tenant": TENANT, "metric": AOV, "granularity": "hour", **span})
    assert got.status_code == 200, got.text
    events = within(seeded.hot, start, end)
    by_hour: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_hour.setdefault(iso(floor(e["timestamp"], "hour")), []).append(e)
    truth = {bucket: aov(by_hour.get(bucket, [])) for bucket in every_bucket(start, end, "hour")}
    points = {p[0]: p[1] for s in got.json()["series"] for p in s["points"]}
    assert points == truth
    assert None in truth.values() and any(v is not None for v in truth.values())  # both cases are exercised


def test_breakdown_top_n_and_adhoc_rank_and_filter_by_a_kpi(client: TestClient, data: dict[str, Seeded],
                                                            kpis: None) -> None:
    seeded = data[TENANT]
    start, end, span = _window(seeded)
    events = within(seeded.hot, start, end)
    by_country = {c: view_share(es) for c, es in _groups(events, "country").items()}
    got = client.get("/v1/breakdown", params={"tenant": TENANT, "metric": SHARE, "by": "country", **span})
    assert got.status_code == 200, got.text
    assert [(r["country"], r["value"]) for r in got.json()["rows"]] == sorted(
        by_country.items(), key=lambda kv: (-kv[1], kv[0]))
    top = client.get("/v1/topn", params={"tenant": TENANT, "metric": AOV, "by": "page", "n": 2, **span}).json()
    by_page = {p: aov(es) for p, es in _groups(events, "page").items()}
    ranked = sorted(by_page.items(), key=lambda kv: (kv[1] is None, -(kv[1] or 0), kv[0]))[:2]
    assert [(r["page"], r["value"]) for r in top["rows"]] == ranked
    query = {"metrics": [AOV, "purchases"], "dimensions": ["device"], **span,
             "filters": [{"field": AOV, "op": ">", "value": 0}], "order_by": [{"field": AOV, "direction": "asc"}]}
    adhoc = client.post("/v1/query", params={"tenant": TENANT}, json=query)
    assert adhoc.status_code == 200, adhoc.text
    assert adhoc.json()["columns"] == ["device", AOV, "purchases"]
    by_device = [[d, aov(es), total(es, "purchases")] for d, es in _groups(events, "device").items()]
    assert adhoc.json()["rows"] == sorted([r for r in by_device if r[1] is not None and r[1] > 0], key=lambda r: r[1])


def test_a_dashboard_widget_shows_a_kpi_and_a_deleted_kpi_is_that_widgets_error(
        client: TestClient, data: dict[str, Seeded], kpis: None) -> None:
    seeded = data[TENANT]
    start, end, span = _window(seeded)
    widgets = [{"id": "aov", "chart": "number", "query": {"metrics": [AOV, "revenue"], **span}},
               {"id": "share", "chart": "pie", "query": {"metrics": [SHARE], "dimensions": ["device"], **span}}]
    board = client.post("/v1/dashboards", params={"tenant": TENANT}, json={"name": "KPIs", "widgets": widgets})
    assert board.status_code == 201, board.text
    answer = client.get(f"/v1/dashboards/{board.json()['id']}/data", params={"tenant": TENANT})
    assert answer.status_code == 200, answer.text
    got = {w["id"]: w for w in answer.json()["widgets"]}
    events = within(seeded.hot, start, end)
    assert got["aov"]["rows"] == [[aov(events), pytest.approx(total(events, "revenue"))]]
    shares = {d: view_share(es) for d, es in _groups(events, "device").items()}
    assert {r[0]: r[1] for r in got["share"]["rows"]} == shares
    # another tenant has no such KPI: its dashboard cannot hold it
    refused = client.post("/v1/dashboards", params={"tenant": "globex"}, json={"name": "KPIs", "widgets": widgets})
    assert refused.status_code == 400 and AOV in refused.json()["error"]


def test_a_kpi_belongs_to_its_tenant_and_an_unknown_name_says_what_is_known(client: TestClient, kpis: None) -> None:
    other = client.get("/v1/timeseries", params={"tenant": "globex", "metric": AOV, "range": "1h"})
    assert other.status_code == 400 and f"unknown metric {AOV!r}" in other.json()["error"]
    mine = client.get("/v1/timeseries", params={"tenant": TENANT, "metric": "kpi_nope", "range": "1h"})
    assert mine.status_code == 400 and AOV in mine.json()["error"]


def test_an_alert_rule_may_watch_a_kpi_with_a_seasonal_anomaly_condition(client: TestClient, kpis: None) -> None:
    rule = {"name": f"aov {uuid.uuid4().hex[:6]}", "metric": AOV, "window": "1h",
            "condition": {"type": "anomaly", "k": 3, "weeks": 4, "direction": "drop"},
            "webhook_url": "https://hooks.example.com/aov"}
    made = client.post("/v1/alerts", params={"tenant": TENANT}, json=rule)
    assert made.status_code == 201, made.text
    assert made.json()["metric"] == AOV and made.json()["condition"] == {"type": "anomaly", "direction": "drop",
                                                                         "k": 3.0, "weeks": 4}
    minutes = client.post("/v1/alerts", params={"tenant": TENANT}, json={**rule, "window": "5m"})
    assert minutes.status_code == 400 and "whole hours" in minutes.json()["detail"]
    elsewhere = client.post("/v1/alerts", params={"tenant": "globex"}, json=rule)
    assert elsewhere.status_code == 400 and f"unknown metric {AOV!r}" in elsewhere.json()["detail"]
    assert client.delete(f"/v1/alerts/{made.json()['id']}", params={"tenant": TENANT}).status_code == 204


def test_a_kpi_streams_live_over_sse_websocket_and_graphql_with_the_formula_per_minute(
        client: TestClient, app: FastAPI, data: dict[str, Seeded], keys: dict[str, str], kpis: None) -> None:
    seeded = data[TENANT]

    def check(update: dict[str, Any]) -> None:
        """Every minute of the update's window is the formula over that minute's seeded events (null: none)."""
        (series,) = update["series"]
        points = dict(series["points"])
        first = datetime.fromisoformat(update["from"])
        events = within(seeded.hot, first, seeded.now + timedelta(minutes=1))
        by_minute: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            by_minute.setdefault(iso(floor(e["timestamp"], "minute")), []).append(e)
        assert points == {minute: aov(by_minute.get(minute, [])) for minute in points}
        assert any(v is not None for v in points.values()) and None in points.values()

    sse = client.portal.call(read_sse, ROUTES.wrap(app), "/v1/live", {"tenant": TENANT, "metric": AOV, "minutes": 60},
                             bearer_headers(ADMIN_KEY), 1)
    assert sse.status == 200, sse.events
    check(sse.events[0][1])
    with client.websocket_connect("/v1/ws", headers=bearer_headers(keys[TENANT])) as socket:
        socket.send_json({"type": "start", "metric": AOV, "minutes": 60})
        update = socket.receive_json()
        assert update["type"] == "update", update
        check(update)
    with TestClient(client.app).websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as socket:
        socket.send_json({"type": "connection_init", "payload": {"Authorization": f"Bearer {keys[TENANT]}"}})
        assert socket.receive_json() == {"type": "connection_ack"}
        socket.send_json({"id": "1", "type": "subscribe",
                          "payload": {"query": f'subscription {{ live(metric: "{AOV}", minutes: 60) }}'}})
        message = socket.receive_json()
        assert message["type"] == "next", message
        check(message["payload"]["data"]["live"])
        socket.send_json({"id": "1", "type": "complete"})
    # another tenant's key does not know the KPI: refused before a stream starts
    with client.websocket_connect("/v1/ws", headers=bearer_headers(keys["globex"])) as socket:
        socket.send_json({"type": "start", "metric": AOV, "minutes": 60})
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
        assert closed.value.code == 4400
