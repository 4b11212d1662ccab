"""GraphQL's product analytics, KPI and report-schedule fields against REST, in process: for the same tenant
and arguments each field's answer is the endpoint's, and both equal the clickstream laid (hot tier and lake);
KPIs and schedules are written through mutations with REST's checks; another tenant's are out of reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

import tests.analytics_truth as truth
from common.hot_store import HotStore
from common.settings import Settings
from tests.analytics_clickstream import FUNNEL, laid_recent_and_old
from tests.graphql_checks import analytics_equal_rest, data_of, kpis_equal_rest

TENANT = "graph-analytics"


@pytest.fixture(scope="module")
def stream(settings: Settings, hot: HotStore) -> dict[str, Any]:
    return laid_recent_and_old(settings, hot, TENANT, "g", seed=21)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _graph(client: TestClient, tenant: str):
    def graph(document: str, variables: dict[str, Any]) -> dict[str, Any]:
        answer = client.post("/graphql", params={"tenant": tenant}, json={"query": document, "variables": variables})
        assert answer.status_code == 200, answer.text
        return answer.json()
    return graph


class _AsTenant:
    """The REST client acting as ``tenant`` (the component app runs without API keys: ``?tenant=``)."""

    def __init__(self, client: TestClient, tenant: str) -> None:
        self._client, self._tenant = client, tenant

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._client.get(path, params={**(params or {}), "tenant": self._tenant})

    def post(self, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        return self._client.post(path, json=json, params={**(params or {}), "tenant": self._tenant})


@pytest.mark.parametrize("where", ["hot", "lake"])
def test_funnel_dropoff_retention_paths_and_sessions_equal_rest_and_the_truth(client: TestClient, stream, where):
    start, end = stream[where]
    events = stream["recent" if where == "hot" else "old"]
    window = {"from": _iso(start), "to": _iso(end)}
    answered = analytics_equal_rest(_graph(client, TENANT), _AsTenant(client, TENANT), window, FUNNEL)
    expected = truth.funnel(events, FUNNEL, start, end, window=timedelta(days=1), breakdown="device")
    assert [s["count"] for s in answered["funnel"]["steps"]] == [s["count"] for s in expected["steps"]]
    assert expected["steps"][0]["count"] > 0, "an empty funnel would prove nothing"
    assert answered["funnel"]["sources"] == (["hot:events_raw"] if where == "hot" else ["lake:events"])
    assert answered["funnelDropoff"]["users"] == expected["dropped"][1]
    assert {r["entry_page"]: r["sessions"] for r in answered["sessions"]["rows"]} == {
        k: m["sessions"] for k, m in truth.session_metrics(events, start, end, by="entry_page").items()}


def test_kpis_equal_rest_and_are_written_through_mutations(client: TestClient, data) -> None:
    tenant = "acme"  # the seeded tenant: its rollups are in the hot tier
    graph = _graph(client, tenant)
    made = data_of(graph('mutation { createKpi(name: "graph_views_per_event", formula: "page_views / events") '
                         '{ name version metrics } }', {}))
    assert made["createKpi"] == {"name": "graph_views_per_event", "version": 1, "metrics": ["events", "page_views"]}
    taken = graph('mutation { createKpi(name: "graph_views_per_event", formula: "events") { name } }', {})
    assert taken["errors"][0]["extensions"]["status"] == 409
    invalid = graph('mutation { createKpi(name: "Bad Name", formula: "events") { name } }', {})
    assert invalid["errors"][0]["extensions"]["status"] == 400
    changed = data_of(graph('mutation { replaceKpi(name: "graph_views_per_event", formula: "100 * page_views / events")'
                            ' { version formula } }', {}))
    assert changed["replaceKpi"] == {"version": 2, "formula": "100 * page_views / events"}

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    window = {"from": _iso(now - timedelta(hours=12)), "to": _iso(now)}
    answered = kpis_equal_rest(graph, _AsTenant(client, tenant), "graph_views_per_event", window)
    totals = client.post("/v1/query", params={"tenant": tenant}, json={
        "metrics": ["page_views", "events"], "dimensions": ["country"], **window}).json()
    expected = {r[0]: (100 * r[1] / r[2] if r[2] else None) for r in totals["rows"]}
    assert {r[0]: r[1] for r in answered["by_country"]["rows"]} == pytest.approx(expected) and expected

    # another tenant's KPI is unknown here; this tenant's is not listed there
    other = _graph(client, "globex")
    assert other('{ kpi(name: "graph_views_per_event") { name } }', {})["errors"][0]["extensions"]["status"] == 404
    assert other('mutation { deleteKpi(name: "graph_views_per_event") }', {})["errors"][0]["extensions"][
        "status"] == 404
    assert "graph_views_per_event" not in str(data_of(other("{ kpis { name } }", {})))
    assert data_of(graph('mutation { deleteKpi(name: "graph_views_per_event") }', {})) == {"deleteKpi": True}
    assert client.get("/v1/kpis/graph_views_per_event", params={"tenant": tenant}).status_code == 404


def test_another_tenants_events_are_out_of_reach_of_the_analytics_fields(client: TestClient, stream) -> None:
    start, end = stream["hot"]
    window = {"from": _iso(start), "to": _iso(end)}
    got = data_of(_graph(client, "globex")(
        "query($from: DateTime!, $to: DateTime!, $steps: [StepInput!]!) {"
        " funnel(steps: $steps, from: $from, to: $to) { tenant steps { count } }"
        " sessions(from: $from, to: $to) { tenant answer } }", {**window, "steps": FUNNEL}))
    assert got["funnel"]["tenant"] == got["sessions"]["tenant"] == "globex"
    mine = _graph(client, TENANT)("query($from: DateTime!, $to: DateTime!) { sessions(from: $from, to: $to) "
                                  "{ answer } }", window)
    assert data_of(mine)["sessions"]["answer"]["totals"]["sessions"] > 0
    assert got["funnel"]["steps"][0]["count"] == 0 and got["sessions"]["answer"]["totals"]["sessions"] == 0
    refused = _graph(client, "globex")('{ sessions(tenant: "graph-analytics") { tenant } }', {})
    assert "tenant" in refused["errors"][0]["message"]


def test_report_schedules_are_listed_created_and_deleted_as_rest_does(client: TestClient) -> None:
    tenant, graph = "graph-reports", _graph(client, "graph-reports")
    create = """mutation($at: String!, $cadence: String!) { createReportSchedule(dashboard: "overview",
        cadence: $cadence, at: $at, tz: "Europe/Paris", weekday: "monday", formats: ["pdf"],
        webhook: "https://example.com/hooks/reports", filter: ["country:FR"]) {
        id dashboard cadence at tz weekday formats email webhook filter created } }"""
    made = data_of(graph(create, {"at": "08:00", "cadence": "weekly"}))["createReportSchedule"]
    rest = client.get(f"/v1/reports/schedules/{made['id']}", params={"tenant": tenant})
    assert rest.status_code == 200 and rest.json() == made
    one = {"id": made["id"]}
    listed = data_of(graph("query($id: ID!) { reportSchedules { id cadence } reportSchedule(id: $id) { deliveries } }",
                           one))
    assert listed["reportSchedules"] == [{"id": s["id"], "cadence": s["cadence"]} for s in client.get(
        "/v1/reports/schedules", params={"tenant": tenant}).json()["schedules"]]
    assert listed["reportSchedule"]["deliveries"] == client.get(
        f"/v1/reports/schedules/{made['id']}/deliveries", params={"tenant": tenant}).json()["deliveries"]
    for at, cadence in (("25:00", "weekly"), ("08:00", "hourly")):  # REST's checks, REST's 400
        refused = graph(create, {"at": at, "cadence": cadence})
        assert refused["errors"][0]["extensions"]["status"] == 400, refused
        assert client.post("/v1/reports/schedules", params={"tenant": tenant}, json={
            "dashboard": "overview", "cadence": cadence, "at": at, "weekday": "monday"}).status_code in (400, 422)
    other = _graph(client, "globex")
    for document in ("query($id: ID!) { reportSchedule(id: $id) { id } }",
                     "mutation($id: ID!) { deleteReportSchedule(id: $id) }"):
        assert other(document, one)["errors"][0]["extensions"]["status"] == 404
    assert made["id"] not in str(data_of(other("{ reportSchedules { id } }", {})))
    assert data_of(graph("mutation($id: ID!) { deleteReportSchedule(id: $id) }", one)) == {
        "deleteReportSchedule": True}
    assert client.get(f"/v1/reports/schedules/{made['id']}", params={"tenant": tenant}).status_code == 404
