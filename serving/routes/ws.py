"""``GET /v1/ws``: what ``/v1/live`` (SSE) carries, over a WebSocket, for clients that do not keep SSE open.

The client opens the socket (``Authorization: Bearer <key>`` or ``X-API-Key`` on the handshake, or no
header) and sends one ``start`` message naming the question and, without a header, the key::

    {"type": "start", "key": "lhk_…", "metric": "page_views", "minutes": 15,
     "group_by": ["country"], "filter": ["device:mobile"]}

A key never travels in the URL (URLs end up in proxy and access logs). Then the server sends
``{"type": "update", …}`` every ``live_interval_seconds`` (the SSE update's JSON plus ``type``),
``{"type": "error", "error": …}`` when a refresh fails (the stream goes on) and ``{"type": "heartbeat"}``
when nothing else was sent for ``HEARTBEAT_SECONDS``. Close codes: 4400 a bad start message or question,
4401 no key, an unknown one, or a key revoked while open (checked every interval), 4403 another tenant's
data, 4429 the key's stream cap or rate limit, 4503 the key table cannot be read.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from common.hot_store import HotStoreError
from serving.context import Serving
from serving.query.engine import QueryTimeout
from serving.query.spec import QueryError
from serving.services.live import MAX_MINUTES, LiveFeed, LiveQuestion
from serving.tenancy.auth import DEFAULT_TENANT, AuthError, keys_sent, resolve_tenant
from serving.tenancy.streams import TooManyStreams

START_TIMEOUT_SECONDS = 10.0  # the start message must come this soon after the handshake
HEARTBEAT_SECONDS = 15.0


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason[:120]  # a close reason is at most 123 bytes


@dataclass(frozen=True)
class Start:
    """A start message: the question is checked once the tenant (and so its KPIs) is known."""

    key: str | None
    tenant: str | None
    metric: str
    minutes: int
    dims: list[str]
    filters: list[str]


def _start(message: Any) -> Start:
    """The key, tenant and question of a start message; ``Refused`` (4400) if it is not one."""
    if not isinstance(message, dict) or message.get("type") != "start":
        raise Refused(4400, 'send {"type": "start", "metric": …} first')
    metric, minutes = message.get("metric"), message.get("minutes", 15)
    dims, filters = message.get("group_by") or [], message.get("filter") or []
    if isinstance(dims, str):
        dims = [d for d in dims.split(",") if d]
    if isinstance(filters, str):
        filters = [filters]
    if (not isinstance(metric, str) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES
            or not all(isinstance(x, str) for x in [*dims, *filters])):
        raise Refused(4400, f"start needs metric (string), minutes (1…{MAX_MINUTES}), group_by and filter (strings)")
    key, tenant = message.get("key"), message.get("tenant")
    return Start(key if isinstance(key, str) else None, tenant if isinstance(tenant, str) else None, metric, minutes,
                 list(dims), list(filters))


def ws_router(serving: Serving) -> APIRouter:
    router = APIRouter(prefix="/v1")
    settings = serving.settings
    feed = LiveFeed(serving.engine, serving.cache, settings, serving.kpis)
    serving.counters.setdefault("ws_streams_open", 0)

    async def who(websocket: WebSocket, sent_key: str | None, named: str | None) -> tuple[str, str, str | None]:
        """(slot holder, tenant, key) of the connection, as the REST dependency decides."""
        bearer, header = keys_sent(websocket.headers)
        keys = {k for k in (sent_key, bearer, header) if k}
        if len(keys) > 1:
            raise Refused(4400, "two different API keys were sent; send one")
        key = keys.pop() if keys else None
        if serving.auth is None:
            return "open", named or DEFAULT_TENANT, None
        try:
            caller = await serving.auth.authenticate(key, None)
            return caller.key_id, resolve_tenant(caller, [named] if named else []), key
        except AuthError as exc:
            raise Refused(4000 + exc.status, exc.message) from None

    @router.websocket("/ws")
    async def live_ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            try:
                first = orjson.loads(await asyncio.wait_for(websocket.receive_text(), START_TIMEOUT_SECONDS))
            except (TimeoutError, orjson.JSONDecodeError, KeyError):
                raise Refused(4400, 'send {"type": "start", "metric": …} as JSON first') from None
            start = _start(first)
            holder, tenant, key = await who(websocket, start.key, start.tenant)
            try:
                question = await feed.question(tenant, start.metric, start.minutes, start.dims, start.filters)
            except QueryError as exc:
                raise Refused(4400, str(exc)) from None
            assert serving.streams is not None
            with serving.streams.hold(holder):
                serving.counters["ws_streams_open"] += 1
                try:
                    await _stream(websocket, tenant, question, key)
                finally:
                    serving.counters["ws_streams_open"] -= 1
        except WebSocketDisconnect:
            return
        except TooManyStreams as exc:
            await _close(websocket, 4429, str(exc)[:120])
        except Refused as exc:
            await _close(websocket, exc.code, exc.reason)

    async def _stream(websocket: WebSocket, tenant: str, question: LiveQuestion, key: str | None) -> None:
        interval = settings.live_interval_seconds
        gone = asyncio.create_task(_until_closed(websocket))
        loop = asyncio.get_running_loop()
        try:
            while not gone.done():
                try:
                    update = b'{"type":"update",' + (await feed.snapshot(tenant, question))[1:]
                except (QueryError, QueryTimeout, TimeoutError, HotStoreError) as exc:
                    update = orjson.dumps({"type": "error", "error": str(exc) or type(exc).__name__})
                await websocket.send_text(update.decode())
                next_at = loop.time() + interval
                while (wait := next_at - loop.time()) > 0 and not gone.done():
                    await asyncio.wait({gone}, timeout=min(wait, HEARTBEAT_SECONDS))
                    if not gone.done() and next_at - loop.time() > 0:
                        await websocket.send_text('{"type":"heartbeat"}')
                if key is not None and serving.auth is not None and not await serving.auth.still_valid(key):
                    raise Refused(4401, "the API key was revoked (or its tenant disabled)")
        finally:
            gone.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gone

    return router


async def _until_closed(websocket: WebSocket) -> None:
    """Returns when the client closes; anything else it sends is ignored."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(code=code, reason=reason)
