"""The demo's shop history: realistic visits (sessions, a purchase funnel, visitors coming back days later) laid
into the lake and the hot tier, and answered by the product analytics endpoints exactly as the truth says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

import tests.analytics_truth as truth
from common.hot_store import HotStore
from common.settings import Settings
from demo.journeys import FUNNEL, history
from demo.shop_history import lay_history

TENANT = "demo-shop"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_the_demo_shop_has_meaningful_funnels_retention_and_sessions(client: TestClient, settings: Settings,
                                                                      hot: HotStore) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    laid = lay_history(settings, hot, now, days=28, tenant=TENANT, seed=5, visitors_per_day=25)
    events = history(TENANT, 28, now, seed=5, visitors_per_day=25)
    assert laid == len(events) > 3000
    assert lay_history(settings, hot, now, days=28, tenant=TENANT, seed=5) == 0  # laid once

    start = now - timedelta(days=6)
    got = client.post("/v1/funnels", params={"tenant": TENANT}, json={
        "steps": FUNNEL, "window": "1d", "from": _iso(start), "to": _iso(now - timedelta(days=1))})
    assert got.status_code == 200, got.text
    counts = [s["count"] for s in got.json()["steps"]]
    assert counts == [s["count"] for s in truth.funnel(events, FUNNEL, start, now - timedelta(days=1),
                                                        window=timedelta(days=1))["steps"]]
    assert counts[0] > counts[1] > counts[2] > counts[3] > 0.1 * counts[0]  # every step loses some, many buy

    monday = (now - timedelta(days=27)).replace(hour=0)
    monday += timedelta(days=(7 - monday.weekday()) % 7)
    question = {"start_event": "page_view", "return_event": "page_view", "period": "week", "periods": 2}
    grid = client.post("/v1/retention", params={"tenant": TENANT}, json={
        **question, "from": _iso(monday), "to": _iso(monday + timedelta(days=7))})
    assert grid.status_code == 200, grid.text
    # the grid's last periods reach past the archive's newest hour: those hours' rows come from the hot tier
    assert grid.json()["sources"] == ["lake:events", "hot:events_raw"]
    expected = truth.retention(events, monday, monday + timedelta(days=7), **question)
    assert {c["cohort"]: c["counts"] for c in grid.json()["cohorts"]} == {
        k[0].date().isoformat(): v for k, v in expected.items()}
    cohort = next(iter(expected.values()))
    assert cohort[1] > 0.1 * cohort[0]  # visitors come back the week after

    sessions = client.get("/v1/sessions", params={"tenant": TENANT, "from": _iso(start), "to": _iso(now)})
    assert sessions.status_code == 200, sessions.text
    metrics = truth.session_metrics(events, start, now)[None]
    assert sessions.json()["totals"]["sessions"] == metrics["sessions"]
    assert 1.5 < metrics["pages_per_session"] < 6 and 0.05 < metrics["bounce_rate"] < 0.6


def test_the_demo_prints_the_shops_funnel_retention_sessions_and_kpi(client: TestClient, settings: Settings,
                                                                     hot: HotStore, capsys) -> None:
    from demo.run import show_shop

    lay_history(settings, hot, datetime.now(UTC), days=28, tenant=TENANT, seed=5, visitors_per_day=25)
    assert show_shop(client, TENANT)
    printed = capsys.readouterr().out
    for text in ("4. purchase", "weekly cohort", "bounce_rate", "avg_order_value"):
        assert text in printed, printed
