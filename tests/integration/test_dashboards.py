"""Saved dashboards on the real stack: CRUD per tenant, every widget in one request (equal to /v1/query and
to the ground truth), cached per dashboard version, and CSV downloads that parse back to the JSON answers."""

from __future__ import annotations

import csv
import io
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from common.hot_store import HotStore
from tests.integration.dashboard_data import TenantData, tenant_with_events

pytestmark = pytest.mark.integration

WIDGETS = [
    {"id": "total", "title": "Events", "chart": "number", "query": {"metrics": ["events", "revenue"]}},
    {"id": "trend", "chart": "line", "query": {"metrics": ["page_views"], "granularity": "minute",
                                               "dimensions": ["device"]}},
    {"id": "countries", "chart": "pie", "query": {"metrics": ["events"], "dimensions": ["country"],
                                                  "order_by": [{"field": "events", "direction": "desc"}]}},
    {"chart": "table", "title": "Top pages", "query": {"metrics": ["events", "unique_users"], "dimensions": ["page"],
                                                       "order_by": [{"field": "events"}], "limit": 5}},
]


@pytest.fixture(scope="module")
def data(api: httpx.Client, hot: HotStore) -> TenantData:
    return tenant_with_events(api, hot, f"dash-{uuid.uuid4().hex[:8]}", n=1200, seed=67)


@pytest.fixture
def client(settings, data: TenantData) -> httpx.Client:
    """The tenant's own key: no ``tenant`` parameter anywhere, the key names it."""
    with httpx.Client(base_url=settings.api_url, timeout=30, headers=data.headers()) as c:
        yield c


def parse_csv(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith('attachment; filename="')
    assert response.headers["content-disposition"].endswith('.csv"')
    return list(csv.reader(io.StringIO(response.text)))


def assert_same_rows(got: list[list[Any]], want: list[list[Any]], what: str = "") -> None:
    """Equal rows; float sums equal up to summation order (ClickHouse adds in parallel, in any order)."""
    assert len(got) == len(want), what
    for g, w in zip(got, want, strict=True):
        assert [pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for v in w] == g, what


def typed_like(cells: list[str], like: list[Any]) -> list[Any]:
    """CSV cells read back with the types of the JSON values they stand for."""
    return [None if c == "" and v is None else type(v)(c) if isinstance(v, int | float) else c
            for c, v in zip(cells, like, strict=True)]


def test_dashboards_crud_is_per_tenant_versioned_and_validated(client: httpx.Client, api: httpx.Client,
                                                                data: TenantData) -> None:
    made = client.post("/v1/dashboards", json={"name": "Sales", "widgets": WIDGETS})
    assert made.status_code == 201, made.text
    board = made.json()
    assert board["version"] == 1 and board["id"].startswith("d-") and made.headers["etag"] == '"1"'
    assert [w["id"] for w in board["widgets"]] == ["total", "trend", "countries", "w1"]
    assert board["widgets"][1]["title"] == "trend"
    path = f"/v1/dashboards/{board['id']}"

    listed = client.get("/v1/dashboards").json()["dashboards"]
    assert [d["id"] for d in listed] == ["overview", board["id"]]
    assert listed[0]["builtin"] is True
    assert client.get(path).json() == board

    # another tenant does not see it; the admin sees it when naming the tenant
    assert api.get(path, params={"tenant": f"other-{uuid.uuid4().hex[:6]}"}).status_code == 404
    assert api.get(path, params={"tenant": data.tenant}).json()["name"] == "Sales"

    # a change someone else made is not overwritten (If-Match), a current one is
    renamed = {"name": "Sales (EU)", "widgets": WIDGETS[:2]}
    stale = client.put(path, json=renamed, headers={"If-Match": '"7"'})
    assert stale.status_code == 412 and "version 1" in stale.json()["error"]
    updated = client.put(path, json=renamed, headers={"If-Match": '"1"'})
    assert updated.status_code == 200 and updated.json()["version"] == 2
    assert client.get(path).json()["name"] == "Sales (EU)"

    # bad widgets are refused with what to change
    bad_metric = {"name": "x", "widgets": [{"id": "a", "chart": "table", "query": {"metrics": ["nope"]}}]}
    assert "widget a: unknown metric 'nope'" in client.post("/v1/dashboards", json=bad_metric).json()["error"]
    line_without_time = {"name": "x", "widgets": [{"chart": "line", "query": {"metrics": ["events"]}}]}
    assert "needs a granularity" in client.put(path, json=line_without_time).json()["error"]
    assert client.post("/v1/dashboards", json={"name": "", "widgets": []}).status_code == 422
    assert client.put("/v1/dashboards/overview", json=renamed).status_code == 409

    assert client.delete(path).status_code == 204
    assert client.get(path).status_code == 404
    assert [d["id"] for d in client.get("/v1/dashboards").json()["dashboards"]] == ["overview"]
    assert client.delete(path).status_code == 404


def test_one_request_answers_every_widget_as_v1_query_does_and_as_the_truth_says(
    client: httpx.Client, data: TenantData
) -> None:
    board = client.post("/v1/dashboards", json={"name": "All", "widgets": WIDGETS}).json()
    for filters, where in (([], {}), (["country:US"], {"country": "US"})):
        answer = client.get(f"/v1/dashboards/{board['id']}/data", params={"range": "1h", "filter": filters})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["version"], body["range"]) == (1, "1h")
        widgets = {w["id"]: w for w in body["widgets"]}
        assert list(widgets) == ["total", "trend", "countries", "w1"]
        for widget in body["widgets"]:
            query = {**widget["query"], "range": "1h",
                     "filters": [{"field": "country", "op": "=", "value": "US"}] if where else []}
            alone = client.post("/v1/query", json=query).json()
            assert widget["columns"] == alone["columns"], widget["id"]
            assert_same_rows(widget["rows"], alone["rows"], widget["id"])

        truth = data.matching(**where)
        events, revenue = widgets["total"]["rows"][0]
        assert events == len(truth)
        assert revenue == pytest.approx(sum(e.get("revenue", 0.0) for e in truth))
        assert {r[0]: r[1] for r in widgets["countries"]["rows"]} == data.totals("country", **where)
        by_device = data.totals("device", event="page_view", **where)
        trend: dict[str, int] = {}
        for _bucket, device, views in widgets["trend"]["rows"]:
            trend[device] = trend.get(device, 0) + views
        assert trend == by_device
        pages = data.totals("page", **where)
        assert [r[1] for r in widgets["w1"]["rows"]] == sorted(pages.values(), reverse=True)[:5]
        assert all(pages[page] == n for page, n, _users in widgets["w1"]["rows"])


@pytest.mark.parametrize("range_", ["1h", "24h", "7d", "30d", "90d", "1y", "7y"])
def test_the_built_in_overview_answers_every_range_of_the_web_pickers(client: httpx.Client, data: TenantData,
                                                                     range_: str) -> None:
    started = time.perf_counter()
    answer = client.get("/v1/dashboards/overview/data", params={"range": range_})
    assert answer.status_code == 200, answer.text
    widgets = {w["id"]: w for w in answer.json()["widgets"]}
    sources = sorted({s for w in widgets.values() for s in w["sources"]})
    print(f"overview {range_}: {1000 * (time.perf_counter() - started):.0f} ms ({answer.headers['x-cache']}) "
          f"from {', '.join(sources)}")
    assert [w.get("error") for w in widgets.values()] == [None] * len(widgets)
    assert widgets["totals"]["rows"][0][0] == len(data.events)
    assert sum(r[1] for r in widgets["events_over_time"]["rows"]) == len(data.events)
    assert {r[0]: r[1] for r in widgets["by_country"]["rows"]} == data.totals("country")


def test_the_answer_is_cached_per_dashboard_version(client: httpx.Client) -> None:
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    closed = {"from": (end - timedelta(hours=2)).isoformat(), "to": end.isoformat()}
    widgets = [{"id": "n", "chart": "number", "query": {"metrics": ["events"], **closed}}]
    board = client.post("/v1/dashboards", json={"name": "Closed", "widgets": widgets}).json()
    url = f"/v1/dashboards/{board['id']}/data"
    started = time.perf_counter()
    first = client.get(url)
    middle = time.perf_counter()
    second = client.get(url)
    ended = time.perf_counter()
    print(f"dashboard data: miss {1000 * (middle - started):.1f} ms, hit {1000 * (ended - middle):.1f} ms")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert first.content == second.content
    client.put(f"/v1/dashboards/{board['id']}", json={"name": "Closed 2", "widgets": widgets}).raise_for_status()
    third = client.get(url)
    assert third.headers["x-cache"] == "miss" and third.json()["name"] == "Closed 2"
    # a range the widget cannot be shown over is that widget's error, not the request's
    too_fine = [{"id": "m", "chart": "line", "query": {"metrics": ["events"], "granularity": "minute"}}]
    board = client.post("/v1/dashboards", json={"name": "Fine", "widgets": too_fine}).json()
    answer = client.get(f"/v1/dashboards/{board['id']}/data", params={"range": "7y"})
    assert answer.status_code == 200 and "exceed 50,000 points" in answer.json()["widgets"][0]["error"]
    assert client.get(f"/v1/dashboards/{board['id']}/data", params={"range": "7w"}).status_code == 400


def test_every_query_endpoint_and_widget_downloads_as_csv_equal_to_its_json(client: httpx.Client,
                                                                           data: TenantData) -> None:
    series = {"metric": "events", "range": "1h", "group_by": "country", "granularity": "minute"}
    json_ts = client.get("/v1/timeseries", params=series).json()
    rows = parse_csv(client.get("/v1/timeseries", params={**series, "format": "csv"}))
    assert rows[0] == ["bucket", "country", "events"]
    expected = [[p[0], s["group"]["country"], p[1]] for s in json_ts["series"] for p in s["points"]]
    assert [typed_like(r, e) for r, e in zip(rows[1:], expected, strict=True)] == expected
    assert sum(int(r[2]) for r in rows[1:]) == len(data.events)

    pie = {"metric": "events", "by": "country", "range": "1h"}
    rows = parse_csv(client.get("/v1/breakdown", params=pie, headers={"Accept": "text/csv"}))
    assert rows[0] == ["country", "events"]
    assert {r[0]: int(r[1]) for r in rows[1:]} == data.totals("country")

    top = parse_csv(client.get("/v1/topn", params={"metric": "revenue", "by": "page", "n": 3, "range": "1h",
                                                   "format": "csv", "filter": "device:mobile"}))
    json_top = client.get("/v1/topn", params={"metric": "revenue", "by": "page", "n": 3, "range": "1h",
                                              "filter": "device:mobile"}).json()
    assert top[0] == ["rank", "page", "revenue"]
    assert_same_rows([[int(r[0]), r[1], float(r[2])] for r in top[1:]],
                     [[r["rank"], r["page"], r["value"]] for r in json_top["rows"]])

    query = {"metrics": ["events", "revenue", "unique_users"], "dimensions": ["device"], "range": "1h"}
    json_q = client.post("/v1/query", json=query).json()
    rows = parse_csv(client.post("/v1/query", params={"format": "csv"}, json=query))
    assert rows[0] == json_q["columns"]
    assert_same_rows([typed_like(r, e) for r, e in zip(rows[1:], json_q["rows"], strict=True)], json_q["rows"])
    assert client.get("/v1/breakdown", params={**pie, "format": "xml"}).status_code == 400

    board = client.post("/v1/dashboards", json={"name": "CSV", "widgets": WIDGETS}).json()
    url = f"/v1/dashboards/{board['id']}/widgets/countries/data.csv"
    response = client.get(url, params={"range": "1h", "filter": "device:desktop"})
    rows = parse_csv(response)
    assert f'filename="{board["id"]}-countries-' in response.headers["content-disposition"]
    assert rows[0] == ["country", "events"]
    assert {r[0]: int(r[1]) for r in rows[1:]} == data.totals("country", device="desktop")
    assert client.get(f"/v1/dashboards/{board['id']}/widgets/nope/data.csv").status_code == 404
