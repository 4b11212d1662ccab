"""Product analytics and custom KPIs through the app in process: every endpoint answers, equal to the truth.

The clickstream of ``tests/analytics_clickstream.py`` goes into the in-process hot tier (recent days) and
the temporary lake's archive (months back); the real stack's version of these checks, with every case and
both tiers forced, is ``tests/integration/test_product_analytics.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

import tests.analytics_truth as truth
from common.hot_store import HotStore
from common.settings import Settings
from tests.analytics_clickstream import FUNNEL, laid_recent_and_old

TENANT = "analytics-co"


@pytest.fixture(scope="module")
def stream(settings: Settings, hot: HotStore) -> dict[str, Any]:
    return laid_recent_and_old(settings, hot, TENANT, "", seed=11)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _span(stream: dict[str, Any], where: str) -> dict[str, str]:
    start, end = stream[where]
    return {"from": _iso(start), "to": _iso(end)}


@pytest.mark.parametrize("where", ["hot", "lake"])
def test_funnel_and_its_dropoff(client: TestClient, stream, where):
    start, end = stream[where]
    events = stream["recent" if where == "hot" else "old"]
    body = {"steps": FUNNEL, "window": "1d", "breakdown": "device", **_span(stream, where)}
    got = client.post("/v1/funnels", params={"tenant": TENANT}, json=body)
    assert got.status_code == 200, got.text
    expected = truth.funnel(events, FUNNEL, start, end, window=timedelta(days=1), breakdown="device")
    assert [s["count"] for s in got.json()["steps"]] == [s["count"] for s in expected["steps"]]
    assert got.json()["sources"] == (["hot:events_raw"] if where == "hot" else ["lake:events"])
    dropped = client.post("/v1/funnels/dropoff", params={"tenant": TENANT, "step": 2}, json=body)
    assert dropped.status_code == 200 and dropped.json()["users"] == expected["dropped"][2]


def test_retention_paths_and_sessions(client: TestClient, stream):
    start, end = stream["lake"]
    question = {"start_event": "page_view", "return_event": "page_view", "period": "week", "periods": 3}
    grid = client.post("/v1/retention", params={"tenant": TENANT}, json={**question, **_span(stream, "lake")})
    assert grid.status_code == 200, grid.text
    assert {c["cohort"]: c["counts"] for c in grid.json()["cohorts"]} == {
        k[0].date().isoformat(): v for k, v in truth.retention(stream["old"], start, end, **question).items()}
    paths = client.post("/v1/paths", params={"tenant": TENANT},
                        json={"start_event": "add_to_cart", "steps": 2, **_span(stream, "lake")})
    assert paths.status_code == 200, paths.text
    assert {(e["step"], e["from"], e["to"]): e["sessions"] for e in paths.json()["edges"]} == truth.paths(
        stream["old"], start, end, start_event="add_to_cart", steps=2)
    start, end = stream["hot"]
    sessions = client.get("/v1/sessions", params={"tenant": TENANT, "by": "entry_page", **_span(stream, "hot")})
    assert sessions.status_code == 200, sessions.text
    assert {r["entry_page"]: r["sessions"] for r in sessions.json()["rows"]} == {
        k: m["sessions"] for k, m in truth.session_metrics(stream["recent"], start, end, by="entry_page").items()}


def test_kpis_are_saved_changed_computed_and_deleted(client: TestClient, data):
    tenant = "acme"  # the tier's seeded tenant: its minute rollups are in the hot tier
    params = {"tenant": tenant}
    created = client.post("/v1/kpis", params=params, json={"name": "views_per_user",
                                                             "formula": "page_views / unique_users"})
    assert created.status_code == 201, created.text
    assert client.get("/v1/kpis", params=params).json()["kpis"][0]["name"] == "views_per_user"
    changed = client.put("/v1/kpis/views_per_user", params=params, json={"formula": "100 * purchases / events"})
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert client.get("/v1/kpis/views_per_user", params=params).json()["formula"] == "100 * purchases / events"
    values = client.get("/v1/kpis/views_per_user/data", params={**params, "range": "1d", "by": "country"})
    assert values.status_code == 200, values.text
    totals = client.post("/v1/query", params=params, json={"metrics": ["purchases", "events"],
                                                          "dimensions": ["country"], "range": "1d"}).json()
    expected = {r[0]: (100 * r[1] / r[2] if r[2] else None) for r in totals["rows"]}
    assert {r[0]: r[1] for r in values.json()["rows"]} == expected and expected
    assert client.delete("/v1/kpis/views_per_user", params=params).status_code == 204
    assert client.get("/v1/kpis/views_per_user", params=params).status_code == 404
