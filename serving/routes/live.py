"""Live updates: a Server-Sent Events stream of a metric's newest minutes.

Every ``live_interval_seconds`` each open stream sends the minute series of the last N minutes (the
in-flight minute included, so a chart sees events seconds after they were sent), from
``serving.services.live`` (shared with the WebSocket and GraphQL subscriptions: one hot-tier query per
question and interval, however many viewers).

Each distinct question still costs a hot query per interval, so one API key may hold at most
``live_max_streams_per_key`` streams open on a process, SSE and WebSocket together (``serving.streams``);
one more is answered 429 until one closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from common.hot_store import HotStoreError
from serving.context import Serving
from serving.query.engine import QueryTimeout
from serving.query.spec import QueryError
from serving.services.live import MAX_MINUTES, LiveFeed
from serving.tenancy.streams import TooManyStreams

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0  # a comment line at least this often keeps proxies from closing an idle stream


def sse_event(event: str, data: bytes, event_id: int) -> bytes:
    """One SSE event; ``data`` is one line of JSON (orjson never writes a newline)."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, event.encode(), data)


def live_router(serving: Serving) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["live"])
    settings = serving.settings
    interval = settings.live_interval_seconds
    serving.counters.setdefault("live_streams_open", 0)
    serving.counters.setdefault("live_streams_total", 0)

    feed = LiveFeed(serving.engine, serving.cache, settings, serving.kpis)

    @router.get(
        "/live",
        summary="Server-Sent Events: a metric's newest minutes, refreshed every few seconds",
        description=(
            "`text/event-stream`. Each `update` event's data is JSON: `series` (one per `group_by` combination) of "
            "`[minute, value]` points for the last `minutes` minutes, the in-flight minute last. Sent every "
            f"{interval:g} s (`LAKEHOUSE_LIVE_INTERVAL_SECONDS`); a failed refresh sends an `error` event and the "
            "stream goes on. Comment lines (`: heartbeat`) keep idle connections open; `retry:` tells "
            "EventSource how soon to reconnect. e.g. `/v1/live?metric=page_views&filter=country:US&minutes=15`"
        ),
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "the event stream"},
                   400: {"description": "unknown metric, dimension or filter"}},
    )
    async def live(
        request: Request,
        tenant: str = Depends(serving.tenant_dependency),
        metric: str = Query(..., description="a metric from /v1/catalog"),
        minutes: int = Query(15, ge=1, le=MAX_MINUTES, description="how many newest minutes each event carries"),
        group_by: str | None = Query(None, description="comma-separated dimensions, one series per combination"),
        filter_: list[str] = Query([], alias="filter", description="dim:value, dim!=value, dim:a|b; repeatable"),
    ) -> Any:
        dims = [d for d in (group_by or "").split(",") if d]
        question = await feed.question(tenant, metric, minutes, dims, filter_)  # a bad one: 400 before the stream
        caller = getattr(request.state, "caller", None)
        holder = caller.key_id if caller is not None else "open"  # as the WebSocket route counts it
        assert serving.streams is not None
        slot = serving.streams.hold(holder)
        try:
            slot.__enter__()  # held until the stream ends: released in events() or by the background task
        except TooManyStreams as exc:
            serving.counters["live_streams_refused"] = serving.counters.get("live_streams_refused", 0) + 1
            return JSONResponse(status_code=429, headers={"Retry-After": str(int(max(interval, 1.0)))},
                                content={"error": f"{exc}, or share one stream between widgets that ask the same "
                                                  "question"})
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                slot.__exit__(None, None, None)

        async def events() -> AsyncIterator[bytes]:
            serving.counters["live_streams_open"] += 1
            serving.counters["live_streams_total"] += 1
            sent = 0
            loop = asyncio.get_running_loop()
            last_write = loop.time()
            try:
                yield b"retry: %d\n: connected\n\n" % int(max(interval, 1.0) * 1000)
                while not await request.is_disconnected():
                    sent += 1
                    try:
                        yield sse_event("update", await feed.snapshot(tenant, question), sent)
                    except (QueryError, QueryTimeout, TimeoutError, HotStoreError) as exc:
                        yield sse_event("error", orjson.dumps({"error": str(exc) or type(exc).__name__}), sent)
                    last_write = loop.time()
                    next_at = last_write + interval
                    while (wait := next_at - loop.time()) > 0:
                        await asyncio.sleep(min(wait, HEARTBEAT_SECONDS))
                        if loop.time() - last_write >= HEARTBEAT_SECONDS:
                            yield b": heartbeat\n\n"
                            last_write = loop.time()
            finally:
                serving.counters["live_streams_open"] -= 1
                release()

        # released by the stream's end, or by the background task when the stream never started
        return StreamingResponse(events(), media_type="text/event-stream", background=BackgroundTask(release),
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router
