"""Alerts on the real stack: a synthetic traffic drop notifies a local webhook once, its recovery once.

The traffic is one event per second of event time (exactly 60 per complete minute); the rule compares
the last settled minute with the one before, so a drop shows within about a minute of the traffic
stopping and a recovery within about a minute of it coming back. Notified values are checked against
the events the test sent.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from common.hot_store import HotStore
from common.settings import Settings
from serving.alerts.evaluator import EvaluatorLease
from stack.services import Stack
from tests.integration.alert_helpers import SteadyTraffic, WebhookReceiver, minute_of
from tests.integration.conftest import wait_for
from tests.integration.hot_truth import hot_minutes

pytestmark = pytest.mark.integration


def drop_rule(receiver: WebhookReceiver, **overrides: Any) -> dict[str, Any]:
    return {"name": "synthetic traffic drop", "metric": "page_views",
            "filters": [{"field": "country", "op": "=", "value": "US"}], "window": "1m",
            "condition": {"type": "change", "direction": "drop", "percent": 50},
            "webhook_url": receiver.url} | overrides


def rule_state(api: httpx.Client, tenant: str, rule_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/alerts/{rule_id}", params={"tenant": tenant})
    assert response.status_code == 200, response.text
    return response.json()["state"]


def evaluations_after(api: httpx.Client, tenant: str, rule_id: str, moment: datetime, count: int) -> None:
    """Wait until the rule was evaluated ``count`` more times after ``moment`` (each tick rewrites evaluated_at)."""
    seen: set[str] = set()

    def evaluated() -> bool:
        at = rule_state(api, tenant, rule_id)["evaluated_at"]
        if at and datetime.fromisoformat(at) > moment:
            seen.add(at)
        return len(seen) >= count

    wait_for(evaluated, 60, f"{count} evaluations of rule {rule_id}", interval=0.3)


def hot_count(hot: HotStore, tenant: str, start: datetime, end: datetime) -> int:
    """Events of ``tenant`` in [start, end) as the hot tier holds them (read directly: the API caches)."""
    return sum(m["events"] for minute, m in hot_minutes(hot, tenant).items() if start <= minute < end)


def test_a_synthetic_traffic_drop_notifies_once_and_its_recovery_once(
    api: httpx.Client, hot: HotStore, settings: Settings, tenant: str
) -> None:
    receiver = WebhookReceiver()
    start = minute_of(datetime.now(UTC)) - timedelta(minutes=4)
    traffic = SteadyTraffic(settings, tenant, since=start).start()
    rule_id = None
    try:
        # steady history is in the hot tier before the rule exists
        backfill_end = minute_of(datetime.now(UTC))
        wait_for(lambda: hot_count(hot, tenant, start, backfill_end) == traffic.count(start, backfill_end) > 0, 60,
                 "the steady history in the hot tier")
        created = api.post("/v1/alerts", params={"tenant": tenant}, json=drop_rule(receiver))
        assert created.status_code == 201, created.text
        rule_id = created.json()["id"]
        assert created.json()["window"] == "1m" and created.json()["state"]["state"] == "ok"

        # steady traffic: evaluated as ok, nothing sent
        evaluations_after(api, tenant, rule_id, datetime.now(UTC), 3)
        assert rule_state(api, tenant, rule_id)["state"] == "ok"
        assert receiver.all() == []

        # the drop
        traffic.pause()
        dropped_at = datetime.now(UTC)
        wait_for(lambda: len(receiver.all()) >= 1, 150, "the firing notification", interval=0.5)
        print(f"drop → firing notification: {(datetime.now(UTC) - dropped_at).total_seconds():.1f} s")
        evaluations_after(api, tenant, rule_id, datetime.now(UTC), 5)  # several ticks later: still one
        assert len(receiver.all()) == 1
        fired = receiver.delivered()[0]
        alert = fired["alert"]
        assert alert["status"] == "firing" and alert["rule_id"] == rule_id and alert["tenant"] == tenant
        assert fired["text"].startswith("[FIRING] synthetic traffic drop") and fired["attachments"]
        window_start = datetime.fromisoformat(alert["window_start"].replace("Z", "+00:00"))
        window_end = datetime.fromisoformat(alert["window_end"].replace("Z", "+00:00"))
        assert window_end - window_start == timedelta(minutes=1) and window_end > minute_of(dropped_at)
        # the values notified are the events sent in the window and the window before
        assert alert["value"] == traffic.count(window_start, window_end)
        assert alert["baseline"] == traffic.count(window_start - timedelta(minutes=1), window_start)
        assert alert["value"] < 0.5 * alert["baseline"]
        assert rule_state(api, tenant, rule_id)["state"] == "firing"

        # the recovery
        traffic.resume()
        resumed_at = datetime.now(UTC)
        wait_for(lambda: len(receiver.all()) >= 2, 150, "the recovery notification", interval=0.5)
        print(f"traffic back → recovery notification: {(datetime.now(UTC) - resumed_at).total_seconds():.1f} s")
        evaluations_after(api, tenant, rule_id, datetime.now(UTC), 5)
        assert len(receiver.all()) == 2
        resolved = receiver.delivered()[1]
        assert resolved["alert"]["status"] == "resolved"
        assert resolved["alert"]["incident_id"] == alert["incident_id"]
        assert resolved["text"].startswith("[RESOLVED]") and resolved["id"] != fired["id"]
        assert rule_state(api, tenant, rule_id)["state"] == "ok"
        assert traffic.errors == []

        counters = api.get("/stats").json()["counters"]
        assert counters["alert_transitions"] >= 2 and counters["alert_deliveries"] >= 2
        history = api.get(f"/v1/alerts/{rule_id}/history", params={"tenant": tenant}).json()["entries"]
        assert [(h["kind"], h["state"]) for h in history] == [
            ("transition", "firing"), ("delivered", "firing"), ("transition", "ok"), ("delivered", "resolved")]
        assert [h["http_status"] for h in history if h["kind"] == "delivered"] == [200, 200]
        assert [h["notification_id"] for h in history if h["kind"] == "delivered"] == [fired["id"], resolved["id"]]
    finally:
        traffic.stop()
        if rule_id:
            api.delete(f"/v1/alerts/{rule_id}", params={"tenant": tenant})
        receiver.close()


def test_rules_are_managed_per_tenant_and_validated(api: httpx.Client, tenant: str) -> None:
    receiver_url = "http://127.0.0.1:9/hook"
    body = {"name": "checkout too quiet", "metric": "purchases", "window": "5m",
            "filters": [{"field": "page", "op": "in", "values": ["/checkout", "/cart"]}],
            "condition": {"type": "threshold", "op": "<", "value": 3}, "webhook_url": receiver_url}
    created = api.post("/v1/alerts", params={"tenant": tenant}, json=body)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["filters"] == [{"field": "page", "op": "in", "values": ["/checkout", "/cart"]}]
    assert rule["condition"] == {"type": "threshold", "op": "<", "value": 3}

    listed = api.get("/v1/alerts", params={"tenant": tenant}).json()["rules"]
    assert [r["id"] for r in listed] == [rule["id"]]
    other = f"{tenant}-other"
    assert api.get("/v1/alerts", params={"tenant": other}).json()["rules"] == []
    assert api.get(f"/v1/alerts/{rule['id']}", params={"tenant": other}).status_code == 404

    replaced = api.put(f"/v1/alerts/{rule['id']}", params={"tenant": tenant},
                       json=body | {"window": "1h", "enabled": False})
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["window"], replaced.json()["enabled"]) == ("1h", False)
    assert replaced.json()["created_at"] == rule["created_at"]
    assert api.get(f"/v1/alerts/{rule['id']}", params={"tenant": tenant}).json()["window"] == "1h"

    for bad, message in [({"metric": "visits"}, "unknown metric 'visits'"),
                         ({"filters": [{"field": "city", "value": "Paris"}]}, "unknown filter field 'city'"),
                         ({"window": "90s"}, "not like 5m"),
                         ({"webhook_url": "file:///etc/passwd"}, "webhook_url"),
                         # the session allows 127.0.0.1/32 for its receiver, nothing else private
                         ({"webhook_url": "http://169.254.169.254/latest/meta-data/"}, "link-local"),
                         ({"webhook_url": "http://10.1.2.3/hook"}, "private"),
                         ({"webhook_url": "http://[::1]:8080/hook"}, "loopback")]:
        refused = api.post("/v1/alerts", params={"tenant": tenant}, json=body | bad)
        assert refused.status_code == 400 and message in refused.text, refused.text
    assert api.post("/v1/alerts", params={"tenant": tenant},
                    json=body | {"condition": {"type": "change", "direction": "sideways", "percent": 5}}
                    ).status_code == 422

    assert api.delete(f"/v1/alerts/{rule['id']}", params={"tenant": tenant}).status_code == 204
    assert api.get(f"/v1/alerts/{rule['id']}", params={"tenant": tenant}).status_code == 404
    assert api.get("/v1/alerts", params={"tenant": tenant}).json()["rules"] == []
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/v1/alerts", "/v1/alerts/{rule_id}", "/v1/alerts/{rule_id}/history"} <= set(paths)


def test_one_replica_holds_the_evaluator_lease_and_without_redis_each_evaluates(
    settings: Settings, stack: Stack
) -> None:
    async def scenario() -> tuple[bool, ...]:
        key = f"lakehouse:alerts:test-lease:{time.time_ns()}"
        first = EvaluatorLease(settings.redis_url, lease_seconds=30, key=key)
        second = EvaluatorLease(settings.redis_url, lease_seconds=30, key=key)
        nowhere = EvaluatorLease("redis://127.0.0.1:1/0", lease_seconds=30, key=key)
        try:
            outcome = (await first.acquire(), await second.acquire(), await first.acquire())  # renewed
            await first.release()
            outcome += (await second.acquire(), await first.acquire(), await nowhere.acquire(), nowhere.redis_down)
            return outcome
        finally:
            for lease in (first, second, nowhere):
                await lease.close()

    assert asyncio.run(scenario()) == (True, False, True, True, False, True, True)


def test_a_failed_delivery_is_recorded_and_retried_and_a_restart_does_not_notify_again(
    api: httpx.Client, hot: HotStore, stack: Stack, tenant: str
) -> None:
    receiver = WebhookReceiver(failures=4)  # 3 attempts in the first tick fail, the second tick's 2nd succeeds
    past = minute_of(datetime.now(UTC)) - timedelta(minutes=3)
    events = [{"tenant": tenant, "event": "page_view", "timestamp": (past + timedelta(seconds=i)).isoformat(),
               "user_id": i, "country": "US"} for i in range(5)]
    assert api.post("/events", json=events, params={"sync": "true"}).json()["accepted"] == 5
    body = {"name": "any traffic", "metric": "page_views", "window": "10m", "webhook_url": receiver.url,
            "condition": {"type": "threshold", "op": ">=", "value": 5}}
    rule_id = None
    try:
        wait_for(lambda: hot_count(hot, tenant, past, past + timedelta(minutes=1)) == 5, 60, "5 events in the hot tier")
        rule_id = api.post("/v1/alerts", params={"tenant": tenant}, json=body).json()["id"]
        wait_for(lambda: len(receiver.delivered()) == 1, 60, "the delivery after 4 failures", interval=0.3)
        statuses = [r.status for r in receiver.all()]
        assert statuses == [500, 500, 500, 500, 200]
        assert len({r.body["id"] for r in receiver.all()}) == 1  # one notification, sent until it arrived
        wait_for(lambda: rule_state(api, tenant, rule_id)["pending_notifications"] == 0, 30, "an empty outbox")
        history = api.get(f"/v1/alerts/{rule_id}/history", params={"tenant": tenant}).json()["entries"]
        deliveries = [(h["kind"], h["attempt"], h["http_status"]) for h in history if h["kind"] != "transition"]
        assert deliveries == [("delivery_failed", 1, 500), ("delivery_failed", 2, 500), ("delivery_failed", 3, 500),
                              ("delivery_failed", 4, 500), ("delivered", 5, 200)]
        assert all(h["detail"] == "" for h in history if h["kind"] != "transition")  # the body is never echoed

        stack.down(["api"])  # the incident's state is in ClickHouse: a new process does not fire it again
        stack.up(["api"])
        evaluations_after(api, tenant, rule_id, datetime.now(UTC), 4)
        assert rule_state(api, tenant, rule_id)["state"] == "firing"
        assert len(receiver.all()) == 5
    finally:
        if rule_id:
            api.delete(f"/v1/alerts/{rule_id}", params={"tenant": tenant})
        receiver.close()
