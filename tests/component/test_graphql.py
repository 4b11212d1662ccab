"""GraphQL at /graphql against REST: the same answers for the same tenant, the document limits, the
tenant boundary, dashboards written through mutations, and the errors with REST's statuses."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from graphql import get_introspection_query

from common.hot_store import HotStore
from common.settings import Settings
from serving.tenancy.auth import bearer_headers
from tests.component.conftest import app_over
from tests.component.seed import Seeded, by_dimension, floor, iso, total, within
from tests.graphql_checks import one_document_equals_rest


def _gql(client: TestClient, document: str, variables: dict[str, Any] | None = None, *,
         key: str | None = None, tenant: str | None = None) -> dict[str, Any]:
    headers = bearer_headers(key) if key else None
    answer = client.post("/graphql", json={"query": document, "variables": variables or {}}, headers=headers,
                         params={"tenant": tenant} if tenant else None)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _data(client: TestClient, document: str, variables: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    body = _gql(client, document, variables, **kw)
    assert "errors" not in body, body["errors"]
    return body["data"]


def test_one_document_answers_exactly_what_the_rest_endpoints_answer(
        client: TestClient, keys: dict[str, str], data: dict[str, Seeded]) -> None:
    seeded, key = data["acme"], keys["acme"]
    start, end = floor(seeded.now - timedelta(hours=20), "hour"), seeded.now
    window = {"from": iso(start), "to": iso(end)}
    rest = TestClient(client.app, headers=bearer_headers(key))
    widgets = [{"id": "n", "chart": "number", "query": {"metrics": ["events", "revenue"], **window}},
               {"id": "p", "chart": "pie", "query": {"metrics": ["page_views"], "dimensions": ["country"], **window}}]
    saved = rest.post("/v1/dashboards", json={"name": "fixed window", "widgets": widgets})
    assert saved.status_code == 201, saved.text
    answered = one_document_equals_rest(lambda d, v: _gql(client, d, v, key=key), rest, window, saved.json()["id"])
    assert answered["timeseries"]["tenant"] == "acme" and answered["timeseries"]["series"], \
        "the window holds events: an empty answer would prove nothing"
    truth = by_dimension([e for e in within(seeded.hot + seeded.lake, start, end) if e["country"] in ("US", "DE")],
                         "page", "events")
    assert {r["page"]: r["value"] for r in answered["breakdown"]["rows"]} == truth  # both equal the events laid
    assert answered["topn"]["rows"]
    assert answered["dashboard_data"]["widgets"][0]["rows"][0][0] == total(
        within(seeded.hot + seeded.lake, start, end, device="mobile"), "events")


def test_catalog_alerts_and_an_adhoc_query_equal_rest(client: TestClient, keys: dict[str, str]) -> None:
    rest = TestClient(client.app, headers=bearer_headers(keys["globex"]))
    rule = rest.post("/v1/alerts", json={"name": "drop", "metric": "events", "window": "5m",
                                         "condition": {"type": "threshold", "op": "<", "value": 1},
                                         "webhook_url": "https://hooks.example.com/services/T0/B0/X"})
    assert rule.status_code == 201, rule.text
    spec = {"metrics": ["events"], "dimensions": ["device"], "from": "2020-01-01T00:00:00Z",
            "to": "2020-01-02T00:00:00Z"}
    got = _data(client, """query($spec: JSON!, $id: ID!) {
        catalog { metrics { name description } dimensions granularities tiers }
        alerts { id name metric window condition webhookUrl enabled state { state pendingNotifications } }
        alert(id: $id) { id name }
        missing: alert(id: "nope") { id }
        query(spec: $spec) { columns rows from to }
      }""", {"spec": spec, "id": rule.json()["id"]}, key=keys["globex"])
    catalog = rest.get("/v1/catalog").json()
    assert {m["name"]: m["description"] for m in got["catalog"]["metrics"]} == catalog["metrics"]
    assert got["catalog"]["dimensions"] == catalog["dimensions"]
    listed = rest.get("/v1/alerts").json()["rules"]
    assert [(a["id"], a["name"], a["condition"], a["state"]["state"]) for a in got["alerts"]] == [
        (r["id"], r["name"], r["condition"], r["state"]["state"]) for r in listed]
    assert got["alert"] == {"id": rule.json()["id"], "name": "drop"} and got["missing"] is None
    adhoc = rest.post("/v1/query", json=spec).json()
    assert {k: got["query"][k] for k in ("columns", "rows", "from", "to")} == {
        k: adhoc[k] for k in ("columns", "rows", "from", "to")}


def test_dashboards_are_written_through_mutations_with_rest_checks(client: TestClient) -> None:
    tenant = f"g-{uuid.uuid4().hex[:8]}"
    widgets = [{"id": "t", "title": "Total", "chart": "number", "query": {"metrics": ["events"], "range": "6h"}}]
    made = _data(client, """mutation($d: DashboardInput!) { createDashboard(dashboard: $d) { id version widgets { id }
        } }""", {"d": {"name": "Ops", "widgets": widgets}}, tenant=tenant)["createDashboard"]
    assert made["version"] == 1 and made["widgets"] == [{"id": "t"}]
    assert client.get(f"/v1/dashboards/{made['id']}", params={"tenant": tenant}).json()["name"] == "Ops"

    replace = """mutation($id: ID!, $d: DashboardInput!, $v: Int) {
        replaceDashboard(id: $id, dashboard: $d, ifVersion: $v) { version name } }"""
    renamed = _data(client, replace, {"id": made["id"], "d": {"name": "Ops 2", "widgets": widgets}, "v": 1},
                    tenant=tenant)
    assert renamed["replaceDashboard"] == {"version": 2, "name": "Ops 2"}
    stale = _gql(client, replace, {"id": made["id"], "d": {"name": "x", "widgets": []}, "v": 1}, tenant=tenant)
    assert stale["errors"][0]["extensions"]["status"] == 412  # what PUT answers for a stale If-Match
    invalid = _gql(client, replace, {"id": made["id"], "d": {"name": "x", "widgets": [
        {"chart": "radar", "query": {"metrics": ["events"]}}]}}, tenant=tenant)
    assert invalid["errors"][0]["extensions"]["status"] == 400 and "chart" in invalid["errors"][0]["message"]
    unknown_metric = _gql(client, replace, {"id": made["id"], "d": {"name": "x", "widgets": [
        {"chart": "number", "query": {"metrics": ["nope"]}}]}}, tenant=tenant)
    assert unknown_metric["errors"][0]["extensions"]["status"] == 400, unknown_metric
    assert _data(client, 'mutation($id: ID!) { deleteDashboard(id: $id) }', {"id": made["id"]},
                 tenant=tenant) == {"deleteDashboard": True}
    assert client.get(f"/v1/dashboards/{made['id']}", params={"tenant": tenant}).status_code == 404


def test_another_tenants_data_is_unreachable_through_any_field_or_argument(
        client: TestClient, keys: dict[str, str]) -> None:
    mine = _data(client, 'mutation { createDashboard(dashboard: {name: "secret"}) { id } }',
                 key=keys["globex"])["createDashboard"]["id"]
    acme = keys["acme"]
    # no field or argument names a tenant: asking for one is a schema error, not a read
    for document in ('{ timeseries(metric: "events", tenant: "globex") { tenant } }',
                     '{ dashboards(tenant: "globex") { id } }'):
        refused = _gql(client, document, key=acme)
        assert "data" not in refused or refused["data"] is None
        assert "tenant" in refused["errors"][0]["message"]
    # the URL's ?tenant= is the REST rule: a tenant key naming another tenant is a 403 before anything runs
    assert client.post("/graphql", params={"tenant": "globex"}, headers=bearer_headers(acme),
                       json={"query": "{ dashboards { id } }"}).status_code == 403
    # another tenant's dashboard id is unknown here, in every field that takes an id
    for document in ("query($id: ID!) { dashboard(id: $id) { name } }",
                     "mutation($id: ID!) { deleteDashboard(id: $id) }",
                     'mutation($id: ID!) { replaceDashboard(id: $id, dashboard: {name: "x"}) { id } }'):
        answer = _gql(client, document, {"id": mine}, key=acme)
        assert answer["errors"][0]["extensions"]["status"] == 404, answer
    listed = _data(client, "{ dashboards { id } alerts { id } }", key=acme)
    assert mine not in {d["id"] for d in listed["dashboards"]}
    globex_rules = {r["id"] for r in client.get("/v1/alerts", params={"tenant": "globex"}).json()["rules"]}
    assert not globex_rules & {a["id"] for a in listed["alerts"]}
    for rule_id in globex_rules:
        assert _data(client, "query($id: ID!) { alert(id: $id) { id } }", {"id": rule_id}, key=acme) == {"alert": None}
    # every answer is the caller's tenant
    assert _data(client, '{ timeseries(metric: "events", range: "1h") { tenant } }', key=acme) == {
        "timeseries": {"tenant": "acme"}}
    assert _data(client, "{ dashboard(id: \"overview\") { data } }", key=acme)["dashboard"]["data"]["widgets"]


def test_no_key_or_a_revoked_key_is_refused_before_any_field_runs(client: TestClient) -> None:
    anonymous = TestClient(client.app)
    assert anonymous.post("/graphql", json={"query": "{ catalog { tiers } }"}).status_code == 401
    wrong = anonymous.post("/graphql", json={"query": "{ catalog { tiers } }"}, headers=bearer_headers("made-up"))
    assert wrong.status_code == 401 and "revoked" in wrong.json()["error"]


@pytest.mark.parametrize(("document", "says"), [
    ("{ dashboards { widgets { query } } " + " ".join(f"a{i}: catalog {{ tiers }}" for i in range(20)) + " }",
     "aliases"),
    ("{ " + " ".join(f'q{i}: timeseries(metric: "events") {{ tenant }}' for i in range(10)) + " }", "costs more"),
    ("fragment F on Catalog { tiers } { catalog { ...F ...F } "
     + " ".join(f'q{i}: topn(metric: "events", by: "page") {{ n }}' for i in range(9)) + " }", "costs more"),
    ("{ dashboards { id " + "__typename " * 3000 + "} }", "token"),
])
def test_a_document_over_a_limit_is_refused_with_a_message_and_runs_nothing(
        client: TestClient, document: str, says: str) -> None:
    answer = _gql(client, document)
    assert answer.get("data") is None
    assert says in " ".join(e["message"] for e in answer["errors"]), answer["errors"]


def test_depth_is_limited(settings: Settings, hot: HotStore) -> None:
    with app_over(settings, hot, graphql_max_depth=1) as shallow:
        assert "errors" not in _gql(shallow, "{ catalog { tiers } }")
        deep = _gql(shallow, "{ dashboards { widgets { id } } }")
        assert "exceeds maximum operation depth" in deep["errors"][0]["message"] and deep.get("data") is None


def test_introspection_and_graphiql_are_on_locally_and_a_setting_turns_them_off(
        client: TestClient, settings: Settings, hot: HotStore) -> None:
    page = TestClient(client.app).get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    types = _data(client, "{ __schema { queryType { name } } }")
    assert types == {"__schema": {"queryType": {"name": "Query"}}}
    full = _data(client, get_introspection_query())  # what GraphiQL and schemathesis ask: within every limit
    assert "timeseries" in {f["name"] for t in full["__schema"]["types"] if t["name"] == "Query" for f in t["fields"]}
    with app_over(settings, hot, graphql_introspection=False) as private:
        refused = _gql(private, "{ __schema { queryType { name } } }")
        assert "introspection" in refused["errors"][0]["message"].lower()
        assert private.get("/graphql", headers={"Accept": "text/html"}).status_code != 200
        assert "errors" not in _gql(private, "{ catalog { tiers } }")


def test_get_runs_queries_and_errors_carry_rests_status(client: TestClient) -> None:
    got = client.get("/graphql", params={"query": "{ catalog { granularities } }"})
    assert got.status_code == 200 and got.json()["data"]["catalog"]["granularities"]
    bad = _gql(client, '{ ok: catalog { tiers } timeseries(metric: "nope") { tenant } }')
    assert bad["data"] is None or bad["data"].get("timeseries") is None
    assert bad["errors"][0]["extensions"]["status"] == 400 and "nope" in bad["errors"][0]["message"]
    assert _gql(client, '{ topn(metric: "events", by: "page", n: 0) { n } }')["errors"][0]["extensions"][
        "status"] == 400
    batched = client.post("/graphql", json=[{"query": "{ catalog { tiers } }"}] * 2)
    assert batched.status_code == 400  # batches are not accepted: one operation per request
