"""Funnels, retention, paths and session metrics equal the plain-Python truth on either engine.

A generator lays one tenant's clickstream twice: in the hot tier (the last days, ``events_raw``) and months
back in the lake (archive Parquet, as ``batch/archive.py`` writes it), each with hand-made cases — ties on
time broken by the event id, repeated steps, exclusions, sessions crossing midnight, a session cut at 24 h,
client session ids, conversions after the range's end, events arriving late — plus random visitors who
browse, add to cart, check out and come back days later. Every answer of the API (auto-routed and with a
forced tier) is compared with ``tests/analytics_truth.py``, which knows nothing of SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyarrow as pa
import pytest

import tests.analytics_truth as truth
from common.events import EVENT_ARROW_SCHEMA
from common.hot_store import HotStore
from common.settings import Settings
from tests.analytics_clickstream import EXCLUDE, FUNNEL, REPEAT, clickstream, lay_hot, lay_lake
from tests.integration.direct_hot import insert_events

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def data(settings: Settings, hot: HotStore) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    tenant = f"pa-{now:%H%M%S}"
    recent = clickstream(tenant, "h", now - timedelta(days=6), 5, seed=1)
    old_base = now - timedelta(days=150)
    old = clickstream(tenant, "l", old_base - timedelta(days=40), 40, seed=2)
    # late events: the hot tier receives some of a day's events after the rest
    early = [e for e in recent.events if e["event_id"].endswith(("1", "2", "3", "4", "5", "6", "7"))]
    late = [e for e in recent.events if e not in early]
    lay_hot(hot, early)
    lay_hot(hot, late)
    lay_lake(settings, old.events, tenant)
    other = clickstream(f"{tenant}-other", "h", now - timedelta(days=6), 5, seed=3)
    lay_hot(hot, other.events)
    return {"tenant": tenant, "now": now, "hot": recent.events, "lake": old.events, "other": other,
            "ranges": {"hot": (now - timedelta(days=5), now - timedelta(days=2)),
                       "lake": (old_base - timedelta(days=39), old_base - timedelta(days=5))}}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def post(api: httpx.Client, path: str, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = api.post(path, params={"tenant": tenant}, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def expected_steps(t: dict[str, Any]) -> list[tuple]:
    return [(s["count"], s["time_to_convert_mean"], s["time_to_convert_median"]) for s in t]


def got_steps(rows: list[dict[str, Any]]) -> list[tuple]:
    return [(s["count"], s["time_to_convert_mean"], s["time_to_convert_median"]) for s in rows]


TIERS = {"hot": ("auto", "hot"), "lake": ("auto", "lake")}
SOURCE = {"hot": ["hot:events_raw"], "lake": ["lake:events"]}

FUNNEL_CASES = [
    ("ordered users, breakdown", {"steps": FUNNEL, "breakdown": "country", "breakdown_limit": 2}),
    ("strict", {"steps": FUNNEL, "mode": "strict"}),
    ("any order", {"steps": FUNNEL, "mode": "any"}),
    ("sessions", {"steps": FUNNEL, "unit": "sessions", "window": "2h"}),
    ("repeated steps, exclusion", {"steps": REPEAT, "exclusions": EXCLUDE}),
]


@pytest.mark.parametrize("where", ["hot", "lake"])
@pytest.mark.parametrize(("name", "case"), FUNNEL_CASES, ids=[c[0] for c in FUNNEL_CASES])
def test_funnels_equal_the_truth_on_every_engine(api, data, where, name, case):
    start, end = data["ranges"][where]
    window = {"14d": timedelta(days=14), "2h": timedelta(hours=2), "1d": timedelta(days=1)}[case.get("window", "1d")]
    body = {"window": "1d", **case, "from": _iso(start), "to": _iso(end)}
    options = {"window": window, "mode": case.get("mode", "ordered"), "unit": case.get("unit", "users"),
               "exclusions": [{**x, "event": x["event"]} for x in case.get("exclusions", [])]}
    expected = truth.funnel(data[where] + data["hot" if where == "lake" else "lake"], case["steps"], start, end,
                            breakdown=case.get("breakdown"), breakdown_limit=case.get("breakdown_limit", 10),
                            **options)
    assert expected["steps"][0]["count"] > 5 and expected["steps"][-1]["count"] > 0, "a funnel worth testing"
    for tier in TIERS[where]:
        got = post(api, "/v1/funnels", data["tenant"], {**body, "tier": tier})
        assert got["sources"] == SOURCE[where], (tier, got["sources"])
        assert got_steps(got["steps"]) == expected_steps(expected["steps"]), (name, where, tier)
        counts = [s["count"] for s in got["steps"]]
        assert counts == sorted(counts, reverse=True), "funnel counts never rise"
        assert got["conversion_until"] == _iso(end + window)
        if "breakdown" in case:
            rows = {g["value"]: g["steps"] for g in got["breakdown"]}
            assert {v: got_steps(s) for v, s in rows.items()} == {
                v: expected_steps(s) for v, s in expected["breakdown"].items()}
            assert "other" in rows and len(rows) == 3
            for k in range(len(case["steps"])):
                assert sum(s[k]["count"] for s in rows.values()) == got["steps"][k]["count"], "rows sum to total"


@pytest.mark.parametrize("where", ["hot", "lake"])
def test_dropped_users_are_listed_as_json_and_csv(api, data, where):
    start, end = data["ranges"][where]
    body = {"steps": FUNNEL, "window": "1d", "from": _iso(start), "to": _iso(end)}
    expected = truth.funnel(data[where], FUNNEL, start, end, window=timedelta(days=1))["dropped"]
    for step in (1, 2, 3):
        got = api.post("/v1/funnels/dropoff", params={"tenant": data["tenant"], "step": step}, json=body)
        assert got.status_code == 200, got.text
        assert got.json()["users"] == expected[step]
    csv = api.post("/v1/funnels/dropoff", params={"tenant": data["tenant"], "step": 1, "format": "csv"}, json=body)
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.split() == ["user_id", *expected[1]]


@pytest.mark.parametrize("where", ["hot", "lake"])
@pytest.mark.parametrize("by", [None, "entry_page", "exit_page"])
def test_session_metrics_equal_the_truth(api, data, where, by):
    start, end = data["ranges"][where]
    expected = truth.session_metrics(data[where], start, end, non_interactive=frozenset({"scroll"}), by=by)
    assert sum(m["sessions"] for m in expected.values()) > 50
    for tier in TIERS[where]:
        params = {"tenant": data["tenant"], "from": _iso(start), "to": _iso(end), "non_interactive": "scroll",
                  "tier": tier}
        if by:
            params["by"] = by
        got = api.get("/v1/sessions", params=params)
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["sources"] == SOURCE[where]
        keys = ("sessions", "avg_session_duration", "pages_per_session", "bounce_rate")
        if by is None:
            assert {k: body["totals"][k] for k in keys} == expected[None]
        else:
            assert {r[by]: {k: r[k] for k in keys} for r in body["rows"]} == expected
            assert sum(r["sessions"] for r in body["rows"]) == body["totals"]["sessions"]


def test_sessions_cross_midnight_and_are_cut_at_24_hours(data):
    """The hand-made cases really are in the data the engines were compared on."""
    sessions = truth.sessions_of(data["hot"])
    night = [s for s in sessions if s[0]["user_id"] == "hnight"]
    assert len(night) == 1 and night[0][0]["timestamp"].date() != night[0][-1]["timestamp"].date()
    marathon = [s for s in sessions if s[0]["user_id"] == "hmarathon"]
    assert [len(s) for s in marathon] == [72, 7]
    client = [s for s in sessions if s[0]["user_id"] == "hclient"]
    assert [len(s) for s in client] == [3]


RETENTION = {
    "hot": {"period": "day", "periods": 3, "start_event": "page_view", "return_event": "purchase"},
    "lake": {"period": "week", "periods": 4, "start_event": "page_view", "return_event": "page_view"},
}


@pytest.mark.parametrize("where", ["hot", "lake"])
@pytest.mark.parametrize("mode", ["on", "on_or_after"])
@pytest.mark.parametrize("breakdown", [None, "device"])
def test_retention_grids_equal_the_truth(api, data, where, mode, breakdown):
    start, end = data["ranges"][where]
    question = {**RETENTION[where], "mode": mode, "breakdown": breakdown}
    expected = truth.retention(data["hot"] + data["lake"], start, end, **question)
    assert sum(row[1] for row in expected.values()) > 0, "someone comes back"
    for tier in (("hot",) if where == "hot" else ("auto", "lake")):  # first-ever needs the lake unless forced
        got = post(api, "/v1/retention", data["tenant"],
                   {**question, "from": _iso(start), "to": _iso(end), "tier": tier})
        assert got["sources"] == SOURCE[where]
        grid = {(c["cohort"], c.get("value")): c["counts"] for c in got["cohorts"]}
        assert grid == {(k[0].date().isoformat(), k[1]): v for k, v in expected.items()}
        for c in got["cohorts"]:
            assert c["percentages"][0] == 100.0
            assert c["percentages"] == [100 * n / c["size"] for n in c["counts"]]
        if breakdown:
            plain = truth.retention(data["hot"] + data["lake"], start, end, **{**question, "breakdown": None})
            for (cohort, _), counts in plain.items():
                rows = [v for (k, _v), v in expected.items() if k == cohort]
                assert [sum(col) for col in zip(*rows, strict=True)] == counts, "each user in exactly one row"


@pytest.mark.parametrize("where", ["hot", "lake"])
@pytest.mark.parametrize("anchor", [{"start_event": "page_view", "steps": 3}, {"end_event": "purchase"}])
def test_paths_equal_the_truth(api, data, where, anchor):
    start, end = data["ranges"][where]
    expected = truth.paths(data[where], start, end, **anchor)
    assert expected
    for tier in TIERS[where]:
        got = post(api, "/v1/paths", data["tenant"], {**anchor, "from": _iso(start), "to": _iso(end), "tier": tier})
        assert got["sources"] == SOURCE[where]
        assert {(e["step"], e["from"], e["to"]): e["sessions"] for e in got["edges"]} == expected
        assert len(got["edges"]) <= 50


def test_another_tenants_events_are_never_counted(api, data):
    start, end = data["ranges"]["hot"]
    other = data["other"]
    body = {"steps": FUNNEL, "window": "1d", "from": _iso(start), "to": _iso(end)}
    mine = post(api, "/v1/funnels", data["tenant"], body)
    theirs = post(api, "/v1/funnels", other.tenant, body)
    assert got_steps(mine["steps"]) == expected_steps(
        truth.funnel(data["hot"], FUNNEL, start, end, window=timedelta(days=1))["steps"])
    assert got_steps(theirs["steps"]) == expected_steps(
        truth.funnel(other.events, FUNNEL, start, end, window=timedelta(days=1))["steps"])
    dropped = api.post("/v1/funnels/dropoff", params={"tenant": data["tenant"], "step": 1}, json=body).json()
    assert all(u.startswith("h") for u in dropped["users"])
    nobody = post(api, "/v1/paths", "nobody-at-all",
                  {"start_event": "page_view", "from": _iso(start), "to": _iso(end)})
    assert nobody["edges"] == []


def test_csv_and_bad_requests(api, data):
    start, end = data["ranges"]["hot"]
    body = {"steps": FUNNEL, "window": "1d", "from": _iso(start), "to": _iso(end), "breakdown": "device"}
    csv = api.post("/v1/funnels", params={"tenant": data["tenant"], "format": "csv"}, json=body)
    assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("breakdown_value,step,event,count")
    grid = api.post("/v1/retention", params={"tenant": data["tenant"], "format": "csv"},
                    json={**RETENTION["hot"], "from": _iso(start), "to": _iso(end), "tier": "hot"})
    assert grid.text.splitlines()[0] == "cohort,size,period_0,period_1,period_2,period_3"
    for bad, says in [
        ({**body, "steps": FUNNEL[:1]}, "steps"),
        ({**body, "breakdown": "user_id"}, "breakdown"),
        ({**body, "mode": "fuzzy"}, "mode"),
        ({**body, "steps": [{"event": "x'; DROP TABLE events_raw"}, {"event": "y"}]}, "event name"),
        ({**body, "exclusions": [{"event": "x", "from_step": 3, "to_step": 2}]}, "from_step"),
    ]:
        answer = api.post("/v1/funnels", params={"tenant": data["tenant"]}, json=bad)
        assert answer.status_code in (400, 422), answer.text
        assert says in answer.text


def test_a_saved_kpi_is_computed_by_dimension_from_its_metrics(api, hot, data):
    """A KPI's values equal its formula applied to the truth; x / 0 is null; another tenant cannot see it."""
    tenant = f"{data['tenant']}-kpi"
    at = data["now"] - timedelta(hours=2)
    rows = [("US", "purchase", 30.0), ("US", "purchase", 12.5), ("US", "page_view", 0.0), ("DE", "page_view", 0.0),
            ("FR", "purchase", 8.0)]
    events = pa.Table.from_pylist([
        {"tenant": tenant, "event": event, "timestamp": at + timedelta(seconds=i), "event_id": f"k{i}",
         "user_id": f"u{i}", "page": "/", "country": country, "device": "web", "revenue": revenue,
         "properties": "", "received_at": at} for i, (country, event, revenue) in enumerate(rows)],
        schema=EVENT_ARROW_SCHEMA)
    insert_events(hot, events)
    created = api.post("/v1/kpis", params={"tenant": tenant},
                       json={"name": "revenue_per_purchase", "formula": "revenue / purchases"})
    assert created.status_code == 201, created.text
    answer = api.get("/v1/kpis/revenue_per_purchase/data", params={"tenant": tenant, "range": "1d", "by": "country"})
    assert answer.status_code == 200, answer.text
    assert {r[0]: r[1] for r in answer.json()["rows"]} == {"US": 21.25, "DE": None, "FR": 8.0}
    assert api.get("/v1/kpis/revenue_per_purchase", params={"tenant": data["tenant"]}).status_code == 404
    assert api.post("/v1/kpis", params={"tenant": tenant},
                    json={"name": "x", "formula": "revenue / secret"}).status_code == 400
    assert api.delete("/v1/kpis/revenue_per_purchase", params={"tenant": tenant}).status_code == 204
    assert api.get("/v1/kpis", params={"tenant": tenant}).json()["kpis"] == []
