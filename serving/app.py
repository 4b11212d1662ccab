"""The serving process: HTTP API (ingestion and dashboard queries) and, in embedded mode, the hot node.

It is the one long-running process that owns embedded chDB (the brief's one-process rule), so it
also serves the hot store to the stream job, Dagster runs and the CLI over Arrow Flight.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from common.hot_schema import migrate
from common.hot_store import HotStore, HotStoreError, open_hot_store
from common.settings import Settings
from ingest.api import ingest_router
from ingest.publisher import EventPublisher
from serving.cache import QueryCache, cache_key
from serving.hot_node import start_hot_node
from serving.metric_query import METRICS, QueryError, build_request, compile_series

log = logging.getLogger(__name__)


def _series(rows: list[dict[str, Any]], group_by: list[str]) -> list[dict[str, Any]]:
    series: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[d] for d in group_by)
        entry = series.setdefault(key, {"group": dict(zip(group_by, key, strict=True)), "points": []})
        bucket = datetime.fromtimestamp(row["bucket"], UTC)
        entry["points"].append([bucket.isoformat().replace("+00:00", "Z"), row["value"]])
    return list(series.values())


def create_app(settings: Settings, store: HotStore, publisher: EventPublisher, cache: QueryCache) -> FastAPI:
    counters = {"hot_queries": 0}
    app = FastAPI(
        title="Lakehouse API",
        version="0.1.0",
        description="Event ingestion and dashboard queries over the hot ClickHouse tier.",
    )
    app.include_router(ingest_router(settings, publisher))

    @app.get("/health", tags=["operations"], summary="Liveness and hot-tier reachability")
    def health() -> Any:
        try:
            store.query_arrow("SELECT 1")
        except HotStoreError as exc:
            return JSONResponse(status_code=503, content={"status": "degraded", "hot_store": str(exc)})
        return {"status": "ok", "hot_store": "ok", "embedded": settings.embedded_clickhouse}

    @app.get("/metrics/catalog", tags=["queries"], summary="The metrics and dimensions that can be queried")
    def catalog() -> Any:
        return {
            "metrics": {name: m.description for name, m in METRICS.items()},
            "dimensions": ["event", "country", "device", "page"],
        }

    @app.get(
        "/metrics",
        tags=["queries"],
        summary="A metric's time series",
        description="e.g. `/metrics?name=page_views&range=7d&group_by=country&filter=device:mobile`",
    )
    async def metrics(
        name: str,
        tenant: str = "default",
        range: str | None = Query(None, description="15m, 6h, 7d … (default 1h); or use from/to"),  # noqa: A002,B008
        from_: datetime | None = Query(None, alias="from"),  # noqa: B008
        to: datetime | None = None,
        group_by: str | None = Query(None, description="comma-separated dimensions"),  # noqa: B008
        filter: list[str] = Query(default_factory=list, description="dimension:value, repeatable"),  # noqa: A002,B008
        granularity: str | None = Query(None, description="minute, hour or day (default: from the range)"),  # noqa: B008
    ) -> Any:
        started = time.perf_counter()
        try:
            request = build_request(
                name=name, tenant=tenant, range_text=range, start=_utc(from_), end=_utc(to), group_by=group_by,
                filters=filter, granularity=granularity, now=datetime.now(UTC),
            )
        except QueryError as exc:
            return JSONResponse(status_code=400, content={"error": str(exc)})
        async def answer() -> bytes:
            sql, params = compile_series(request)
            counters["hot_queries"] += 1
            table = await run_in_threadpool(store.query_arrow, sql, params)
            return orjson.dumps({
                "metric": name,
                "tenant": tenant,
                "from": request.start.isoformat().replace("+00:00", "Z"),
                "to": request.end.isoformat().replace("+00:00", "Z"),
                "granularity": request.granularity,
                "group_by": request.group_by,
                "filters": request.filters,
                "source": "hot",
                "series": _series(table.to_pylist(), request.group_by),
                "took_ms": round((time.perf_counter() - started) * 1000, 2),
            })

        asked = {"name": name, "range": range, "from": from_, "to": to, "group_by": group_by,
                 "filter": sorted(filter), "granularity": granularity}
        key = cache_key(tenant, "metrics", asked)
        try:
            open_range = to is None or _utc(to) >= datetime.now(UTC) - timedelta(minutes=1)
            ttl = settings.cache_open_ttl_seconds if open_range else settings.cache_ttl_seconds
            body, how = await cache.get_or_compute(key, ttl, answer)
        except HotStoreError as exc:
            return JSONResponse(status_code=503, content={"error": str(exc)})
        return Response(body, media_type="application/json", headers={"X-Cache": how})

    @app.get("/stats", tags=["operations"], summary="Counters: hot-tier queries and cache outcomes")
    def stats() -> Any:
        return {"hot_queries": counters["hot_queries"], "cache": cache.stats.as_dict()}

    @app.on_event("shutdown")
    async def _close() -> None:
        publisher.close()
        await cache.close()

    return app


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def serve(settings: Settings) -> None:
    """Run the API (and the hot node when ClickHouse is embedded) until stopped."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = open_hot_store(settings, is_hot_node=True)
    applied = migrate(store)
    if applied:
        log.info("hot tier migrations applied: %s", ", ".join(applied))
    if settings.embedded_clickhouse:
        start_hot_node(store, settings.hot_node_url)
    cache = QueryCache(settings.redis_url)
    app = create_app(settings, store, EventPublisher(settings), cache)
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level="warning", access_log=False)
