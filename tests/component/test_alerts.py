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
