"""GraphQL against REST, shared by the component tier (app in process) and the real stack: one document's
fields equal the REST endpoints' answers for the same tenant and arguments, and the schema fuzzer's run.

Each check takes ``graph(document, variables) -> body`` and a REST client already acting as the tenant (an
httpx or Starlette test client), asserts the equality and returns REST's answers, so the caller can compare
them with its own ground truth (an equality of two empty answers would prove nothing).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from serving.graphql_api.schema import SCHEMA

Graph = Callable[[str, dict[str, Any]], dict[str, Any]]
ROOT = Path(__file__).resolve().parents[1]
# The fuzzer's key: its document rate (~60/s, each field metered) must never meet the tenant's limit, whose answer
# (a field error coded RATE_LIMITED) schemathesis cannot tell from a resolver's failure. Limits have their own tests.
FUZZER_KEY = {"role": "tenant", "rate_per_second": 1_000_000, "burst": 1_000_000}
VOLATILE = {"took_ms", "tookMs", "generated_at", "cache"}  # differ between two computations of one answer


def stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def data_of(body: dict[str, Any]) -> dict[str, Any]:
    assert not body.get("errors"), body["errors"]
    return body["data"]


ONE_DOCUMENT = """
query Page($from: DateTime!, $to: DateTime!, $board: ID!) {
  timeseries(metric: "page_views", from: $from, to: $to, granularity: "hour", groupBy: ["country"],
             filter: ["device:mobile"]) {
    tenant from to granularity sources readFrom approximate truncated
    metric groupBy series { group points { bucket value } }
  }
  breakdown(metric: "events", by: "page", from: $from, to: $to, filter: ["country:US|DE"]) {
    tenant from to metric by filters rows { key value } sources
  }
  topn(metric: "revenue", by: "country", n: 3, from: $from, to: $to) { rows { rank key value } }
  dashboard(id: $board) { id name version widgets { id title chart query } data(filter: ["device:mobile"]) }
}
"""


def one_document_equals_rest(graph: Graph, rest: Any, window: dict[str, str], board_id: str) -> dict[str, Any]:
    """A time series, a breakdown, a top-N and a dashboard with its data in one document, each equal to its
    endpoint's answer; returns REST's answers by field."""
    got = data_of(graph(ONE_DOCUMENT, {**window, "board": board_id}))

    series = rest.get("/v1/timeseries", params={"metric": "page_views", "granularity": "hour", "group_by": "country",
                                               "filter": "device:mobile", **window}).json()
    ts = got["timeseries"]
    assert (ts["tenant"], ts["from"], ts["to"], ts["granularity"]) == (
        series["tenant"], series["from"], series["to"], "hour")
    assert (ts["sources"], ts["readFrom"], ts["approximate"], ts["truncated"]) == (
        series["sources"], series["read_from"], series["approximate"], series["truncated"])
    assert ts["groupBy"] == series["group_by"] == ["country"]
    assert [{"group": s["group"], "points": [[p["bucket"], p["value"]] for p in s["points"]]} for s in ts["series"]] \
        == series["series"]

    split = rest.get("/v1/breakdown", params={"metric": "events", "by": "page", "filter": "country:US|DE",
                                             **window}).json()
    bd = got["breakdown"]
    assert (bd["tenant"], bd["filters"], bd["sources"]) == (split["tenant"], split["filters"], split["sources"])
    assert [{"page": r["key"], "value": r["value"]} for r in bd["rows"]] == split["rows"]

    top = rest.get("/v1/topn", params={"metric": "revenue", "by": "country", "n": 3, **window}).json()
    assert [(r["rank"], r["key"]) for r in got["topn"]["rows"]] == [(r["rank"], r["country"]) for r in top["rows"]]
    assert [r["value"] for r in got["topn"]["rows"]] == pytest.approx([r["value"] for r in top["rows"]])

    board = rest.get(f"/v1/dashboards/{board_id}").json()
    assert {k: got["dashboard"][k] for k in ("id", "name", "version", "widgets")} == {
        k: board[k] for k in ("id", "name", "version", "widgets")}
    answered = rest.get(f"/v1/dashboards/{board_id}/data", params={"filter": "device:mobile"}).json()
    assert stable(got["dashboard"]["data"]) == stable(answered)
    return {"timeseries": series, "breakdown": split, "topn": top, "dashboard_data": answered}


ANALYTICS_DOCUMENT = """
query Analytics($from: DateTime!, $to: DateTime!, $steps: [StepInput!]!, $first: String!, $next: String!) {
  funnel(steps: $steps, from: $from, to: $to, window: "1d", breakdown: "device") {
    tenant from to sources answer
    steps { step event count conversionFromPrevious conversionFromFirst dropOff dropOffRate
            timeToConvertMean timeToConvertMedian }
  }
  funnelDropoff(steps: $steps, step: 1, from: $from, to: $to, window: "1d") { tenant step users answer }
  retention(startEvent: $first, period: "day", periods: 3, from: $from, to: $to) { tenant answer }
  paths(startEvent: $next, steps: 2, from: $from, to: $to) { tenant answer }
  sessions(from: $from, to: $to, by: "entry_page") { tenant answer }
}
"""


def analytics_equal_rest(graph: Graph, rest: Any, window: dict[str, str],
                         steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Funnel (and its step-1 drop-off), retention, paths and sessions of ``steps``' events in one document,
    each equal to its endpoint's answer; returns REST's answers by field."""
    first, second = steps[0]["event"], steps[1]["event"]
    got = data_of(graph(ANALYTICS_DOCUMENT, {**window, "steps": steps, "first": first, "next": second}))
    funnel = {"steps": steps, "window": "1d", **window}
    rest_answers = {
        "funnel": rest.post("/v1/funnels", json={**funnel, "breakdown": "device"}),
        "funnelDropoff": rest.post("/v1/funnels/dropoff", params={"step": 1}, json=funnel),
        "retention": rest.post("/v1/retention", json={"start_event": first, "period": "day", "periods": 3,
                                                      **window}),
        "paths": rest.post("/v1/paths", json={"start_event": second, "steps": 2, **window}),
        "sessions": rest.get("/v1/sessions", params={"by": "entry_page", **window}),
    }
    bodies = {}
    for field, answer in rest_answers.items():
        assert answer.status_code == 200, (field, answer.text)
        bodies[field] = answer.json()
        assert got[field]["tenant"] == bodies[field]["tenant"]
        assert stable(got[field]["answer"]) == stable(bodies[field]), field
    assert got["funnel"]["steps"] == [{camel(k): v for k, v in s.items() if camel(k) in got["funnel"]["steps"][0]}
                                      for s in bodies["funnel"]["steps"]]
    assert got["funnelDropoff"]["users"] == bodies["funnelDropoff"]["users"]
    return bodies


KPI_DOCUMENT = """
query Kpi($name: String!, $from: DateTime!, $to: DateTime!) {
  kpis { name formula metrics description version updated }
  kpi(name: $name) {
    name formula
    byCountry: data(from: $from, to: $to, by: "country") { tenant from to columns rows sources answer }
    byHour: data(from: $from, to: $to, granularity: "hour") { tenant granularity columns rows answer }
  }
}
"""


def kpis_equal_rest(graph: Graph, rest: Any, name: str, window: dict[str, str]) -> dict[str, Any]:
    """The KPI list, one KPI and its values by country and by hour, each equal to its endpoint's answer."""
    got = data_of(graph(KPI_DOCUMENT, {"name": name, **window}))
    listed = rest.get("/v1/kpis").json()["kpis"]
    assert got["kpis"] == [{camel(k): v for k, v in k_.items()} for k_ in listed]
    assert {k: got["kpi"][k] for k in ("name", "formula")} == {k: rest.get(f"/v1/kpis/{name}").json()[k]
                                                              for k in ("name", "formula")}
    by_country = rest.get(f"/v1/kpis/{name}/data", params={"by": "country", **window}).json()
    by_hour = rest.get(f"/v1/kpis/{name}/data", params={"granularity": "hour", **window}).json()
    for field, body in (("byCountry", by_country), ("byHour", by_hour)):
        assert stable(got["kpi"][field]["answer"]) == stable(body)
        assert (got["kpi"][field]["columns"], got["kpi"][field]["rows"]) == (body["columns"], body["rows"])
    return {"by_country": by_country, "by_hour": by_hour}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def run_graphql_fuzzer(url: str, key: str, max_examples: int, hooks: str = "tests.graphql_fuzz_hooks",
                       timeout_s: float = 600) -> str:
    """Schemathesis against ``url``/graphql as ``key``: every query and mutation of the schema is tried and
    no answer is a 5xx; the report.
    One worker: see tests/integration/test_api_contract.py for why."""
    command = [str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/graphql",
               "--checks", "not_a_server_error", "--max-examples", str(max_examples), "--seed", "20261126",
               "--workers", "1", "--request-timeout", "30", "--no-color", "--header", f"Authorization: Bearer {key}"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": hooks,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=ROOT)
    report = run.stdout + run.stderr
    print(report[-2500:])
    assert "SystemError" not in report, report
    assert run.returncode == 0, report
    operations = len(SCHEMA.query.__strawberry_definition__.fields) + len(
        SCHEMA.mutation.__strawberry_definition__.fields)
    tested = re.search(r"Tested: (\d+)", report)
    assert " passed" in report and tested and int(tested.group(1)) == operations, (operations, report)
    return report
