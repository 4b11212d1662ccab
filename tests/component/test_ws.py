"""GET /v1/ws: the live feed over a WebSocket, authenticated on connect, capped per key, closed on revocation."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from common.hot_store import HotStore
from common.settings import Settings
from serving.routes import ws as ws_module
from serving.tenancy.auth import bearer_headers
from tests.component.conftest import ADMIN_KEY, app_over
from tests.component.seed import _event, lay_hot

START = {"type": "start", "metric": "events", "minutes": 5, "filter": ["country:ZZ"]}


def _closed(socket: Any) -> int:
    """The close code once the server closes (after any messages still in flight)."""
    with pytest.raises(WebSocketDisconnect) as closed:
        for _ in range(50):
            socket.receive_json()
    return closed.value.code


def _total(update: dict[str, Any]) -> int:
    return sum(v for s in update["series"] for _, v in s["points"])


def test_a_client_sees_new_events_in_the_next_update(client: TestClient, keys: dict[str, str], hot: HotStore) -> None:
    tenant_key = keys["globex"]
    with client.websocket_connect("/v1/ws", headers=bearer_headers(tenant_key)) as socket:
        socket.send_json(START)
        first = socket.receive_json()
        assert first["type"] == "update" and first["metric"] == "events" and first["minutes"] == 5
        assert first["sources"] == ["hot:rollups_1m"]
        before = _total(first)
        # three events of a country the seed never uses, laid as the stream job lays a micro-batch
        events = [{**_event(random.Random(i), "globex", datetime.now(UTC).replace(microsecond=0)), "country": "ZZ",
                   "event_id": uuid.uuid4().hex} for i in range(3)]
        lay_hot(hot, events)
        for _ in range(20):
            update = socket.receive_json()
            if update["type"] == "update" and _total(update) == before + 3:
                break
        else:
            pytest.fail("the three new events never showed up in an update")


def test_the_key_may_come_in_the_first_message_but_never_in_the_url(client: TestClient, keys: dict[str, str]) -> None:
    anonymous = TestClient(client.app)
    with anonymous.websocket_connect("/v1/ws") as socket:
        socket.send_json({**START, "key": keys["acme"]})
        assert socket.receive_json()["type"] == "update"
    with anonymous.websocket_connect(f"/v1/ws?key={keys['acme']}&api_key={keys['acme']}") as socket:
        socket.send_json(START)
        assert _closed(socket) == 4401


@pytest.mark.parametrize(("start", "code"), [
    ({"type": "hello"}, 4400),
    ({**START, "metric": "bogus"}, 4400),
    ({**START, "minutes": 100_000}, 4400),
    ({**START, "key": "made-up"}, 4401),
    ({**START, "tenant": "globex"}, 4403),  # a tenant key naming another tenant
])
def test_a_bad_start_is_closed_with_a_code_that_says_why(
        client: TestClient, keys: dict[str, str], start: dict[str, Any], code: int) -> None:
    with TestClient(client.app).websocket_connect("/v1/ws") as socket:
        socket.send_json(start if "key" in start else {**start, "key": keys["acme"]})
        assert _closed(socket) == code


def test_a_revoked_keys_open_connection_is_closed(client: TestClient, keys: dict[str, str]) -> None:
    issued = client.post("/v1/admin/tenants/acme/keys", json={"role": "tenant"}).json()
    with TestClient(client.app).websocket_connect("/v1/ws") as socket:
        socket.send_json({**START, "key": issued["key"]})
        assert socket.receive_json()["type"] == "update"
        assert client.delete(f"/v1/admin/keys/{issued['prefix']}").status_code == 200
        assert _closed(socket) == 4401


def test_a_key_holds_at_most_its_cap_of_streams_and_idle_streams_get_heartbeats(
        settings: Settings, hot: HotStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_module, "HEARTBEAT_SECONDS", 0.05)
    with app_over(settings, hot, live_max_streams_per_key=1, live_interval_seconds=0.5) as capped:
        with capped.websocket_connect("/v1/ws", headers=bearer_headers(ADMIN_KEY)) as first:
            first.send_json(START)
            assert first.receive_json()["type"] == "update"
            assert first.receive_json() == {"type": "heartbeat"}  # nothing new for a while: still alive
            with capped.websocket_connect("/v1/ws", headers=bearer_headers(ADMIN_KEY)) as second:
                second.send_json(START)
                assert _closed(second) == 4429
        with capped.websocket_connect("/v1/ws", headers=bearer_headers(ADMIN_KEY)) as again:  # the slot is free
            again.send_json(START)
            assert again.receive_json()["type"] == "update"


# ---------------------------------------------------------------- GraphQL subscriptions (graphql-transport-ws)

SUBSCRIBE = {"id": "1", "type": "subscribe", "payload": {
    "query": 'subscription { live(metric: "events", minutes: 5, filter: ["country:ZY"]) }'}}


def _graphql_ws(client: TestClient, payload: dict[str, Any] | None, headers: dict[str, str] | None = None) -> Any:
    socket = TestClient(client.app).websocket_connect("/graphql", subprotocols=["graphql-transport-ws"],
                                                      headers=headers or {})
    opened = socket.__enter__()
    opened.send_json({"type": "connection_init", **({"payload": payload} if payload is not None else {})})
    return opened


def test_a_subscription_sees_new_events(client: TestClient, keys: dict[str, str], hot: HotStore) -> None:
    socket = _graphql_ws(client, {"Authorization": f"Bearer {keys['globex']}"})
    try:
        assert socket.receive_json() == {"type": "connection_ack"}
        socket.send_json(SUBSCRIBE)
        first = socket.receive_json()
        assert first["type"] == "next" and first["id"] == "1", first
        before = _total(first["payload"]["data"]["live"])
        events = [{**_event(random.Random(i), "globex", datetime.now(UTC).replace(microsecond=0)), "country": "ZY",
                   "event_id": uuid.uuid4().hex} for i in range(2)]
        lay_hot(hot, events)
        for _ in range(20):
            message = socket.receive_json()
            if message["type"] == "next" and _total(message["payload"]["data"]["live"]) == before + 2:
                break
        else:
            pytest.fail("the two new events never showed up in the subscription")
        socket.send_json({"id": "1", "type": "complete"})
    finally:
        socket.__exit__(None, None, None)


def test_a_subscription_needs_a_key_on_connect_and_ends_when_it_is_revoked(
        client: TestClient, keys: dict[str, str]) -> None:
    for payload in (None, {"key": "made-up"}, {"Authorization": "Bearer made-up"}):
        refused = _graphql_ws(client, payload)
        try:
            assert _closed(refused) == 4403  # strawberry's code for a rejected connection_init
        finally:
            refused.__exit__(None, None, None)
    on_header = _graphql_ws(client, {}, headers=bearer_headers(keys["acme"]))  # the handshake's header works too
    try:
        assert on_header.receive_json() == {"type": "connection_ack"}
    finally:
        on_header.__exit__(None, None, None)

    issued = client.post("/v1/admin/tenants/acme/keys", json={"role": "tenant"}).json()
    socket = _graphql_ws(client, {"key": issued["key"]})
    try:
        assert socket.receive_json() == {"type": "connection_ack"}
        socket.send_json(SUBSCRIBE)
        assert socket.receive_json()["type"] == "next"
        assert client.delete(f"/v1/admin/keys/{issued['prefix']}").status_code == 200
        assert _closed(socket) == 4401
    finally:
        socket.__exit__(None, None, None)
