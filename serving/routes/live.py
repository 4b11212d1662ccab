"""Live updates: a Server-Sent Events stream of a metric's newest minutes.

Every ``live_interval_seconds`` each open stream sends the minute series of the last N minutes (the
in-flight minute included, so a chart sees events seconds after they were sent). The series comes
through the query cache under a key shared by every viewer of the same question, kept just under one
interval: thousands of viewers of one dashboard cost one hot-tier query per interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from common.events import format_ts
from common.hot_store import HotStoreError
from serving.cache import cache_key
from serving.context import Serving
from serving.query.engine import QueryTimeout
from serving.query.spec import QueryError, QuerySpec, SpecInput, build_spec, parse_filter_params

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0  # a comment line at least this often keeps proxies from closing an idle stream
MAX_MINUTES = 180


def sse_event(event: str, data: bytes, event_id: int) -> bytes:
    """One SSE event; ``data`` is one line of JSON (orjson never writes a newline)."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, event.encode(), data)


def _iso(epoch: int) -> str:
    return format_ts(datetime.fromtimestamp(epoch, UTC), "auto")


def minute_series(spec: QuerySpec, dims: list[str], rows: list[list[Any]]) -> list[dict[str, Any]]:
    """One series per group, every minute of the range present (minutes without events are 0)."""
    first = int(spec.start.timestamp())
    minutes = range(first, int(spec.end.timestamp()), 60)
    groups: dict[tuple, dict[int, Any]] = {}
    for row in rows:
        groups.setdefault(tuple(row[1:-1]), {})[int(row[0])] = row[-1]
    if not groups and not dims:
        groups[()] = {}
    return [{"group": dict(zip(dims, key, strict=True)), "points": [[_iso(m), values.get(m, 0)] for m in minutes]}
            for key, values in groups.items()]


def live_router(serving: Serving) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["live"])
    settings = serving.settings
    interval = settings.live_interval_seconds
    serving.counters.setdefault("live_streams_open", 0)
    serving.counters.setdefault("live_streams_total", 0)

    async def snapshot(tenant: str, raw: SpecInput, dims: list[str], metric: str, minutes: int) -> bytes:
        now = datetime.now(UTC)
        spec = build_spec(raw, now=now)
        identity = spec.cache_identity() | {"start": None, "end": None, "range": raw.range, "live": True}

        async def compute() -> bytes:
            result = await asyncio.wait_for(run_in_threadpool(serving.engine.run, tenant, spec, now),
                                            timeout=settings.query_timeout_seconds)
            return orjson.dumps({
                "metric": metric, "group_by": dims, "minutes": minutes, "at": format_ts(now, "auto"),
                "from": format_ts(spec.start, "auto"), "to": format_ts(now, "auto"),
                "series": minute_series(spec, dims, result.rows), "sources": result.sources,
            })

        body, _ = await serving.cache.get_or_compute(cache_key(tenant, "live", identity), interval * 0.9, compute)
        return body

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
        raw = SpecInput(metrics=[metric], range=f"{minutes}m", granularity="minute", dimensions=dims,
                        filters=parse_filter_params(filter_))
        build_spec(raw, now=datetime.now(UTC))  # a bad question is a 400 (serving.errors) before the stream starts

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
                        yield sse_event("update", await snapshot(tenant, raw, dims, metric, minutes), sent)
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

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router
