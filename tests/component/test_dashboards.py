"""Saved dashboards over HTTP: CRUD with versions (ETag / If-Match), every widget's answer in one request
equal to the truth, a widget as CSV, and each error with its status."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.component.seed import Seeded, by_dimension, total, within

WIDGETS: list[dict[str, Any]] = [
    {"id": "total", "title": "Totals", "chart": "number", "query": {"metrics": ["events", "revenue"], "range": "6h"}},
    {"id": "countries", "chart": "pie", "query": {"metrics": ["events"], "dimensions": ["country"], "range": "6h"}},
    {"chart": "line", "query": {"metrics": ["page_views"], "granularity": "minute", "range": "1h"}},
]


def _tenant() -> str:
    return f"d-{uuid.uuid4().hex[:8]}"


def test_crud_is_versioned_per_tenant_and_refuses_stale_or_invalid_changes(client: TestClient) -> None:
    tenant = _tenant()
    made = client.post("/v1/dashboards", params={"tenant": tenant}, json={"name": "Sales", "widgets": WIDGETS})
    assert made.status_code == 201, made.text
    board = made.json()
    path = f"/v1/dashboards/{board['id']}"
    assert made.headers["etag"] == '"1"' and made.headers["location"] == path
    assert [w["id"] for w in board["widgets"]] == ["total", "countries", "w1"]

    listed = client.get("/v1/dashboards", params={"tenant": tenant}).json()["dashboards"]
    assert [d["id"] for d in listed] == ["overview", board["id"]]
    assert client.get(path, params={"tenant": tenant}).json() == board
    assert client.get(path, params={"tenant": _tenant()}).status_code == 404  # another tenant's id

    renamed = {"name": "Sales (EU)", "widgets": WIDGETS[:1]}
    stale = client.put(path, params={"tenant": tenant}, json=renamed, headers={"If-Match": '"7"'})
    assert stale.status_code == 412 and "version 1" in stale.json()["error"]
    updated = client.put(path, params={"tenant": tenant}, json=renamed, headers={"If-Match": '"1"'})
    assert updated.status_code == 200 and updated.json()["version"] == 2 and updated.headers["etag"] == '"2"'
    garbled = client.put(path, params={"tenant": tenant}, json=renamed, headers={"If-Match": "soon"})
    assert garbled.status_code == 400 and "If-Match must be a dashboard version" in garbled.json()["error"]

    assert client.put("/v1/dashboards/overview", params={"tenant": tenant}, json=renamed).status_code == 409
    assert client.put(f"/v1/dashboards/d-{uuid.uuid4().hex[:12]}", params={"tenant": tenant},
                      json=renamed).status_code == 404

    assert client.delete(path, params={"tenant": tenant}, headers={"If-Match": '"1"'}).status_code == 412
    deleted = client.delete(path, params={"tenant": tenant}, headers={"If-Match": "*"})
    assert deleted.status_code == 204 and deleted.content == b""
    assert client.get(path, params={"tenant": tenant}).status_code == 404
    assert client.delete(path, params={"tenant": tenant}).status_code == 404


@pytest.mark.parametrize(("widgets", "status", "message"), [
    ([{"id": "a", "chart": "table", "query": {"metrics": ["nope"]}}], 400, "widget a: unknown metric 'nope'"),
    ([{"chart": "line", "query": {"metrics": ["events"]}}], 400, "needs a granularity"),
    ([{"id": "x", "chart": "number", "query": {"metrics": ["events"]}}] * 2, 400, "used twice"),
    ([{"chart": "radar", "query": {"metrics": ["events"]}}], 422, None),
])
def test_invalid_widgets_are_refused_with_what_to_change(client: TestClient, widgets: list[dict[str, Any]],
                                                         status: int, message: str | None) -> None:
    answer = client.post("/v1/dashboards", params={"tenant": _tenant()}, json={"name": "x", "widgets": widgets})
    assert answer.status_code == status
    if message:
        assert message in answer.json()["error"]


def test_one_request_answers_every_widget_as_the_truth_says(client: TestClient, data: dict[str, Seeded]) -> None:
    seeded = data["acme"]
    board = client.post("/v1/dashboards", params={"tenant": "acme"}, json={"name": "All", "widgets": WIDGETS}).json()
    answer = client.get(f"/v1/dashboards/{board['id']}/data", params={"tenant": "acme", "filter": "device:mobile"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-cache"] == "bypass"  # no Redis here: computed, never refused
    body = answer.json()
    assert (body["dashboard"], body["version"], body["filters"]) == (
        board["id"], 1, [{"field": "device", "op": "=", "values": ["mobile"]}])
    widgets = {w["id"]: w for w in body["widgets"]}
    events = within(seeded.hot, seeded.now - timedelta(hours=6), seeded.now + timedelta(seconds=1), device="mobile")
    (count, revenue), = widgets["total"]["rows"]
    assert count == total(events, "events") and revenue == pytest.approx(total(events, "revenue"))
    assert {row[0]: row[1] for row in widgets["countries"]["rows"]} == by_dimension(events, "country", "events")
    alone = client.post("/v1/query", params={"tenant": "acme"}, json={
        **WIDGETS[1]["query"], "filters": [{"field": "device", "value": "mobile"}]}).json()
    assert widgets["countries"]["rows"] == alone["rows"] and widgets["countries"]["columns"] == alone["columns"]


def test_a_dashboard_range_the_widget_cannot_show_is_that_widgets_error_only(client: TestClient) -> None:
    board = client.post("/v1/dashboards", params={"tenant": "acme"}, json={"name": "Y", "widgets": WIDGETS}).json()
    body = client.get(f"/v1/dashboards/{board['id']}/data", params={"tenant": "acme", "range": "7y"}).json()
    widgets = {w["id"]: w for w in body["widgets"]}
    assert "minute buckets" in widgets["w1"]["error"] and "error" not in widgets["total"]
    csv_path = f"/v1/dashboards/{board['id']}/widgets/w1/data.csv"
    refused = client.get(csv_path, params={"tenant": "acme", "range": "7y"})
    assert refused.status_code == 400 and "widget 'w1'" in refused.json()["error"]


def test_the_built_in_overview_answers_and_a_widget_downloads_as_csv(client: TestClient) -> None:
    body = client.get("/v1/dashboards/overview/data", params={"tenant": "globex", "range": "24h"}).json()
    pie = next(w for w in body["widgets"] if w["id"] == "by_country")
    download = client.get("/v1/dashboards/overview/widgets/by_country/data.csv",
                          params={"tenant": "globex", "range": "24h"})
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert 'filename="overview-by_country-' in download.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows == [pie["columns"], *([str(v) for v in row] for row in pie["rows"])]


def test_viewing_errors_are_400_and_404(client: TestClient) -> None:
    base = "/v1/dashboards/overview"
    assert client.get(f"{base}/data", params={"range": "soon"}).status_code == 400
    bad_filter = client.get(f"{base}/data", params={"filter": "country"})
    assert bad_filter.status_code == 400 and "dimension:value" in bad_filter.json()["error"]
    assert client.get("/v1/dashboards/d-000000000000/data").status_code == 404
    missing_widget = client.get(f"{base}/widgets/nope/data.csv")
    assert missing_widget.status_code == 404 and "nope" in missing_widget.json()["error"]
    assert client.get("/v1/dashboards/d-000000000000/widgets/w1/data.csv").status_code == 404


def test_a_tenant_key_sees_only_its_own_dashboards(client: TestClient, keys: dict[str, str]) -> None:
    board = client.post("/v1/dashboards", params={"tenant": "globex"}, json={"name": "G", "widgets": []}).json()
    as_acme = {"Authorization": f"Bearer {keys['acme']}"}
    assert client.get(f"/v1/dashboards/{board['id']}", headers=as_acme).status_code == 404
    assert client.get(f"/v1/dashboards/{board['id']}", params={"tenant": "globex"},
                      headers=as_acme).status_code == 403
    as_globex = {"Authorization": f"Bearer {keys['globex']}"}
    assert client.get(f"/v1/dashboards/{board['id']}", headers=as_globex).json()["name"] == "G"


def test_dashboard_queries_past_the_timeout_are_504_and_a_down_hot_tier_503(
        slow_client: TestClient, down_client: TestClient) -> None:
    slow = slow_client.get("/v1/dashboards/overview/data", params={"range": "1h"})
    assert slow.status_code == 504 and "pick a shorter range" in slow.json()["error"]
    down = down_client.get("/v1/dashboards", params={"tenant": "acme"})
    assert down.status_code == 503 and "not reachable" in down.json()["error"]


FUNNEL_WIDGET = {"id": "checkout", "title": "Checkout", "chart": "funnel", "query": {
    "steps": [{"event": "page_view"}, {"event": "add_to_cart", "filters": [{"field": "country", "value": "US"}]},
              {"event": "purchase"}], "window": "1d", "range": "30d"}}
ANALYTICS_WIDGETS: list[dict[str, Any]] = [
    FUNNEL_WIDGET,
    {"id": "cohorts", "chart": "retention", "query": {"start_event": "signup", "period": "day", "periods": 6}},
    {"id": "after_home", "chart": "paths", "query": {"start_event": "page_view", "steps": 3}},
    {"id": "visits", "chart": "sessions", "query": {"range": "24h"}},
]


def test_analytics_widgets_are_saved_as_their_endpoints_requests_and_viewed_as_requests_to_send(
        client: TestClient) -> None:
    tenant = _tenant()
    made = client.post("/v1/dashboards", params={"tenant": tenant},
                       json={"name": "Product", "widgets": [*ANALYTICS_WIDGETS, WIDGETS[0]]})
    assert made.status_code == 201, made.text
    saved = made.json()["widgets"]
    assert [w["chart"] for w in saved] == ["funnel", "retention", "paths", "sessions", "number"]
    assert saved[0]["query"] == FUNNEL_WIDGET["query"]  # what was sent, nothing defaulted
    assert saved[1]["query"] == {"start_event": "signup", "period": "day", "periods": 6}

    data = client.get(f"/v1/dashboards/{made.json()['id']}/data", params={"tenant": tenant, "range": "7d"})
    assert data.status_code == 200, data.text
    funnel, retention, _paths, sessions, number = data.json()["widgets"]
    # the dashboard's range replaces the widget's own; the page sends this request and shows its answer
    assert funnel["request"] == {"method": "POST", "path": "/v1/funnels",
                                 "body": {**FUNNEL_WIDGET["query"], "range": "7d"}}
    assert retention["request"]["path"] == "/v1/retention" and retention["request"]["body"]["range"] == "7d"
    assert sessions["request"] == {"method": "GET", "path": "/v1/sessions", "params": {"range": "7d"}}
    assert "rows" in number and "request" not in number
    request = funnel["request"]
    answer = client.post(request["path"], params={"tenant": tenant}, json=request["body"])
    assert answer.status_code == 200, answer.text
    assert [s["event"] for s in answer.json()["steps"]] == ["page_view", "add_to_cart", "purchase"]
    csv_answer = client.get(f"/v1/dashboards/{made.json()['id']}/widgets/checkout/data.csv",
                            params={"tenant": tenant})
    assert csv_answer.status_code == 400 and "POST /v1/funnels?format=csv" in csv_answer.json()["error"]
    report = client.get(f"/v1/dashboards/{made.json()['id']}/report.pdf", params={"tenant": tenant})
    assert report.status_code == 200 and report.content.startswith(b"%PDF")  # a page each, saying where to look


@pytest.mark.parametrize(("widget", "status", "message"), [
    ({"id": "f", "chart": "funnel", "query": {"steps": [{"event": "page_view"}]}}, 422, None),
    ({"id": "f", "chart": "funnel", "query": {"steps": [{"event": "a"}, {"event": "b"}], "mode": "sideways"}},
     400, "widget f: unknown"),
    ({"id": "f", "chart": "funnel", "query": {"steps": [{"event": "a b"}, {"event": "b"}]}}, 400, "widget f:"),
    ({"id": "r", "chart": "retention", "query": {"start_event": "x", "period": "fortnight"}}, 400, "widget r:"),
    ({"id": "p", "chart": "paths", "query": {"start_event": "a", "end_event": "b"}}, 400, "exactly one of"),
    ({"id": "s", "chart": "sessions", "query": {"by": "country"}}, 400, "widget s:"),
    ({"id": "n", "chart": "number", "query": {"steps": [{"event": "a"}, {"event": "b"}]}}, 422, None),
])
def test_invalid_analytics_widgets_are_refused_with_their_endpoints_message(
        client: TestClient, widget: dict[str, Any], status: int, message: str | None) -> None:
    answer = client.post("/v1/dashboards", params={"tenant": _tenant()}, json={"name": "x", "widgets": [widget]})
    assert answer.status_code == status, answer.text
    if message:
        assert message in answer.json()["error"]
