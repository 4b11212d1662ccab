"""Alert rules over HTTP: create, list, read, replace, delete, history; per tenant; invalid rules refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from common.hot_store import HotStore
from serving.alerts.store import AlertStore, HistoryEntry

RULE: dict[str, Any] = {
    "name": "checkout traffic drop", "metric": "page_views", "window": "10m",
    "filters": [{"field": "page", "op": "=", "value": "/checkout"}],
    "condition": {"type": "change", "direction": "drop", "percent": 20},
    "webhook_url": "https://hooks.example.com/services/T0/B0/X",
}


def _tenant() -> str:
    return f"a-{uuid.uuid4().hex[:8]}"


def test_a_rule_is_created_read_listed_replaced_and_deleted(client: TestClient) -> None:
    tenant = _tenant()
    made = client.post("/v1/alerts", params={"tenant": tenant}, json=RULE)
    assert made.status_code == 201, made.text
    rule = made.json()
    assert (rule["tenant"], rule["window"], rule["enabled"]) == (tenant, "10m", True)
    assert rule["filters"] == [{"field": "page", "op": "=", "values": ["/checkout"]}]
    assert rule["state"]["state"] == "ok" and rule["state"]["pending_notifications"] == 0
    path = f"/v1/alerts/{rule['id']}"

    assert client.get(path, params={"tenant": tenant}).json() == rule
    assert [r["id"] for r in client.get("/v1/alerts", params={"tenant": tenant}).json()["rules"]] == [rule["id"]]

    changed = {**RULE, "window": "1h", "condition": {"type": "threshold", "op": "<", "value": 5}}
    replaced = client.put(path, params={"tenant": tenant}, json=changed)
    assert replaced.status_code == 200
    assert replaced.json()["condition"] == {"type": "threshold", "op": "<", "value": 5.0}
    assert replaced.json()["created_at"] == rule["created_at"] and replaced.json()["window"] == "1h"

    assert client.delete(path, params={"tenant": tenant}).status_code == 204
    assert client.get(path, params={"tenant": tenant}).status_code == 404
    assert client.get("/v1/alerts", params={"tenant": tenant}).json() == {"rules": []}


def test_another_tenants_rule_is_not_found(client: TestClient) -> None:
    rule = client.post("/v1/alerts", params={"tenant": _tenant()}, json=RULE).json()
    other = {"tenant": _tenant()}
    for method, extra in (("GET", {}), ("PUT", {"json": RULE}), ("DELETE", {})):
        answer = client.request(method, f"/v1/alerts/{rule['id']}", params=other, **extra)
        assert answer.status_code == 404 and "GET /v1/alerts lists them" in answer.json()["detail"]
    assert client.get(f"/v1/alerts/{rule['id']}/history", params=other).status_code == 404


@pytest.mark.parametrize(("change", "status", "message"), [
    ({"metric": "bogus"}, 400, "unknown metric 'bogus'"),
    ({"window": "90s"}, 400, "window"),
    ({"webhook_url": "ftp://example.com"}, 400, "webhook_url must be an http"),
    ({"filters": [{"field": "events", "op": ">", "value": 3}]}, 400, "metric bounds belong in its condition"),
    ({"condition": {"type": "change", "direction": "sideways", "percent": 5}}, 422, None),
    ({"name": ""}, 422, None),
])
def test_an_invalid_rule_is_refused_with_what_to_send(client: TestClient, change: dict[str, Any], status: int,
                                                      message: str | None) -> None:
    answer = client.post("/v1/alerts", params={"tenant": _tenant()}, json={**RULE, **change})
    assert answer.status_code == status, answer.text
    if message:
        assert message in answer.json()["detail"]


def test_the_history_lists_transitions_and_deliveries_oldest_first(client: TestClient, hot: HotStore) -> None:
    tenant = _tenant()
    rule = client.post("/v1/alerts", params={"tenant": tenant}, json=RULE).json()
    at = datetime.now(UTC).replace(microsecond=0)
    AlertStore(hot).add_history([  # as the evaluator records a firing and its delivery
        HistoryEntry(tenant, rule["id"], "transition", "firing", "inc-1", "n-1", 3.0, 10.0, at=at),
        HistoryEntry(tenant, rule["id"], "delivered", "firing", "inc-1", "n-1", attempt=1, http_status=200,
                     at=at + timedelta(seconds=1)),
    ])
    answer = client.get(f"/v1/alerts/{rule['id']}/history", params={"tenant": tenant})
    assert answer.status_code == 200
    entries = answer.json()["entries"]
    assert [(e["kind"], e["http_status"]) for e in entries] == [("transition", None), ("delivered", 200)]
    newest = client.get(f"/v1/alerts/{rule['id']}/history", params={"tenant": tenant, "limit": 1}).json()
    assert [e["kind"] for e in newest["entries"]] == ["delivered"]
    assert client.get(f"/v1/alerts/{rule['id']}/history", params={"tenant": tenant, "limit": 0}).status_code == 422


def test_a_tenant_key_manages_only_its_own_rules(client: TestClient, keys: dict[str, str]) -> None:
    as_globex = {"Authorization": f"Bearer {keys['globex']}"}
    made = client.post("/v1/alerts", json=RULE, headers=as_globex)
    assert made.status_code == 201 and made.json()["tenant"] == "globex"
    assert client.get(f"/v1/alerts/{made.json()['id']}",
                      headers={"Authorization": f"Bearer {keys['acme']}"}).status_code == 404
    assert client.post("/v1/alerts", params={"tenant": "acme"}, json=RULE, headers=as_globex).status_code == 403
    assert client.delete(f"/v1/alerts/{made.json()['id']}", headers=as_globex).status_code == 204


def test_alert_rules_answer_503_while_the_hot_node_is_down(down_client: TestClient) -> None:
    answer = down_client.get("/v1/alerts")
    assert answer.status_code == 503 and "not reachable" in answer.json()["error"]


def test_an_anomaly_rule_fires_against_the_same_hour_of_previous_weeks_and_records_its_baseline(
        hot: HotStore, settings: Any) -> None:
    """The evaluator over the real hot tier: four previous weeks' same hour make the baseline (from the hourly
    rollups, weeks back), the current hour falls far below it, and the history shows the baseline."""
    import asyncio
    import statistics

    from serving.alerts.evaluator import AlertEvaluator, EvaluatorLease
    from serving.alerts.rules import Rule, parse_condition
    from serving.alerts.webhook import WebhookSender
    from serving.analytics.kpis import KpiStore
    from serving.query.engine import QueryEngine
    from tests.component.conftest import closed_port
    from tests.component.seed import lay_hot

    tenant = _tenant()
    now = datetime.now(UTC)
    end = (now - timedelta(seconds=30)).replace(minute=0, second=0, microsecond=0)  # the last settled hour
    weeks = [20, 24, 18, 22]  # page views in the same hour 1, 2, 3 and 4 weeks back
    events = []
    for n, (week, count) in enumerate([(0, 4), *enumerate(weeks, start=1)]):
        for i in range(count):
            events.append({"tenant": tenant, "event": "page_view", "event_id": f"{n}-{i}-{uuid.uuid4().hex}",
                           "timestamp": end - timedelta(days=7 * week, minutes=50 - i), "user_id": f"u{i}",
                           "page": "/", "country": "US", "device": "mobile", "revenue": 0.0, "properties": "",
                           "received_at": now})
    events += [{**e, "event": "click", "event_id": e["event_id"] + "c"} for e in events
               if e["timestamp"] >= end - timedelta(hours=1)]
    lay_hot(hot, events)
    KpiStore(hot).put(tenant, "view_share", "100 * page_views / events")
    hook = "http://127.0.0.1:1/hook"  # refused by the egress policy: the deliveries fail, the transitions stay
    anomaly = Rule(id="seasonal", tenant=tenant, name="views vs weeks", metric="page_views", filters=[],
                   window_minutes=60, condition=parse_condition({"type": "anomaly", "k": 3, "weeks": 4,
                                                                 "direction": "drop"}), webhook_url=hook)
    share = Rule(id="share", tenant=tenant, name="share", metric="view_share", filters=[], window_minutes=120,
                 condition=parse_condition({"type": "threshold", "op": "<", "value": 60}), webhook_url=hook)
    alerts = AlertStore(hot)
    for rule in (anomaly, share):
        alerts.put_rule(rule)
    evaluator = AlertEvaluator(alerts, QueryEngine(hot), WebhookSender(0.5, 1),
                               EvaluatorLease(f"redis://127.0.0.1:{closed_port()}/0", 30),
                               interval_seconds=60, settle_seconds=30, clock=lambda: now, kpis=KpiStore(hot))

    async def tick() -> Any:
        try:
            return await evaluator.tick()
        finally:
            await evaluator.stop()

    report = asyncio.run(tick())
    assert sorted(report.transitions) == [("seasonal", "firing"), ("share", "firing")]
    fired = {rule_id: [e for e in alerts.history(tenant, rule_id) if e["kind"] == "transition"][0]
             for rule_id in ("seasonal", "share")}
    assert fired["seasonal"]["value"] == 4 and fired["seasonal"]["baseline"] == statistics.fmean(weeks)
    assert "from the previous weeks: 20, 24, 18, 22" in fired["seasonal"]["detail"]
    sigmas = (4 - statistics.fmean(weeks)) / statistics.stdev(weeks)
    assert f"{sigmas:+.2f} σ" in fired["seasonal"]["detail"]
    assert fired["share"]["value"] == 50.0  # 4 page views of 8 events in the hour
    assert alerts.state(tenant, "seasonal").baseline == statistics.fmean(weeks)
