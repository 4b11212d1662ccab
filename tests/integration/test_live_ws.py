"""Live updates over WebSocket on the real stack: GET /v1/ws and a GraphQL subscription (graphql-transport-ws)
show events sent through POST /events within the freshness target, with the counts that were sent; a revoked
key's open socket is closed."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from common.settings import Settings
from tests.integration.test_live import point

pytestmark = pytest.mark.integration

FRESHNESS_SECONDS = 60  # as the SSE test: events sent → seen on the live stream


def _ws_url(settings: Settings, path: str) -> str:
    return settings.api_url.replace("http://", "ws://", 1) + path


def _send_events(api: httpx.Client, tenant: str) -> str:
    sent_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    events = [{"tenant": tenant, "event": "click", "timestamp": sent_at.isoformat(), "user_id": i % 5,
               "country": "FR" if i % 3 else "DE"} for i in range(37)]
    assert api.post("/events", json=events, params={"sync": "true"}).json()["accepted"] == 37
    return sent_at.replace(second=0).isoformat().replace("+00:00", "Z")


def _until(updates: Any, key: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    for update in updates:
        if point(update, key) == 37:
            return update, time.monotonic() - started
        assert time.monotonic() - started < FRESHNESS_SECONDS, "the events did not show up in time"
    raise AssertionError("the stream ended")


def _plain(socket: ClientConnection) -> Any:
    while True:
        message = json.loads(socket.recv(timeout=30))
        if message["type"] == "update":
            yield message


def test_a_websocket_client_sees_new_events(api: httpx.Client, settings: Settings, tenant: str) -> None:
    start = {"type": "start", "key": settings.admin_key, "tenant": tenant, "metric": "clicks", "minutes": 5,
             "group_by": ["country"]}
    with connect(_ws_url(settings, "/v1/ws"), open_timeout=10) as socket:
        socket.send(json.dumps(start))
        updates = _plain(socket)
        next(updates)
        key = _send_events(api, tenant)
        newest, took = _until(updates, key)
    print(f"events sent → seen on /v1/ws: {took:.1f} s")
    assert {s["group"]["country"]: dict(map(tuple, s["points"]))[key] for s in newest["series"]} == \
        {"FR": 24, "DE": 13}


def test_a_graphql_subscription_sees_new_events(api: httpx.Client, settings: Settings, tenant: str) -> None:
    url = _ws_url(settings, f"/graphql?tenant={tenant}")
    with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=10) as socket:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {settings.admin_key}"}}
        socket.send(json.dumps(init))
        assert json.loads(socket.recv(timeout=10)) == {"type": "connection_ack"}
        socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": 'subscription { live(metric: "clicks", minutes: 5, groupBy: ["country"]) }'}}))

        def updates() -> Any:
            while True:
                message = json.loads(socket.recv(timeout=30))
                assert message["type"] == "next", message
                yield message["payload"]["data"]["live"]

        stream = updates()
        next(stream)
        key = _send_events(api, tenant)
        newest, took = _until(stream, key)
    print(f"events sent → seen on the GraphQL subscription: {took:.1f} s")
    assert {s["group"]["country"]: dict(map(tuple, s["points"]))[key] for s in newest["series"]} == \
        {"FR": 24, "DE": 13}


def test_a_revoked_keys_websocket_is_closed(api: httpx.Client, settings: Settings, tenant: str) -> None:
    assert api.post("/v1/admin/tenants", json={"id": tenant}).status_code == 201
    issued = api.post(f"/v1/admin/tenants/{tenant}/keys", json={"role": "tenant"}).json()
    with connect(_ws_url(settings, "/v1/ws"), open_timeout=10,
                 additional_headers={"Authorization": f"Bearer {issued['key']}"}) as socket:
        socket.send(json.dumps({"type": "start", "metric": "events", "minutes": 5}))
        next(_plain(socket))
        assert api.delete(f"/v1/admin/keys/{issued['prefix']}").status_code == 200
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(20):
                socket.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
