"""The HTTP API (ingestion and dashboard queries) over a hot store: what every serving process runs.

Which process owns embedded chDB (chDB allows one process per data folder) and serves it to the stream
job, Dagster runs and the CLI over Arrow Flight is ``serving.processes``' business: by default the API
process itself, or a hot node of its own in front of N API workers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from common.hot_store import HotStore, HotStoreError
from common.settings import Settings
from ingest.api import ingest_router
from ingest.publisher import EventPublisher, Publisher
from serving.alerts.evaluator import build_evaluator
from serving.alerts.store import AlertStore
from serving.cache import QueryCache
from serving.context import Serving, enable_api_keys
from serving.errors import install_error_handlers
from serving.fast_reads import FastCachedReads
from serving.graphql_api.router import graphql_router
from serving.hot_writes import HotWrites
from serving.observability import RequestObservability, ServingMetrics, metrics_router
from serving.query.engine import QueryEngine
from serving.request_guard import RequestGuard
from serving.restatements import RestatementListener
from serving.routes.admin import admin_router
from serving.routes.alerts import alerts_router
from serving.routes.analytics import analytics_router
from serving.routes.dashboards import dashboards_router
from serving.routes.kpis import kpis_router
from serving.routes.live import live_router
from serving.routes.profiles import profiles_router
from serving.routes.queries import queries_router
from serving.routes.report_schedules import report_schedules_router
from serving.routes.web_ui import install_web_ui
from serving.routes.ws import ws_router
from serving.tenancy.auth import document_key_security
from serving.tenancy.query_slots import TenantFairStore, TenantQuerySlots

log = logging.getLogger(__name__)


def _key_check(serving: Serving) -> Callable[[str | None, str | None], Awaitable[str | None]]:
    async def refusal(bearer: str | None, header: str | None) -> str | None:
        if serving.auth is None:  # keys off (open ?tenant=): nothing to check
            return None
        return await serving.auth.refusal(bearer, header)
    return refusal


def create_app(serving: Serving) -> FastAPI:
    settings, store, cache = serving.settings, serving.store, serving.cache
    app = FastAPI(
        title="Lakehouse API",
        version="0.2.0",
        description="Event ingestion and dashboard queries over the hot (ClickHouse), warm and cold (Parquet) tiers.",
    )
    install_error_handlers(app)  # domain errors → HTTP status, for every route (serving/errors.py)
    if serving.metrics is None:
        serving.metrics = ServingMetrics()
    # cached GET answers of URLs the query routes already validated, before FastAPI's parameter handling
    serving.fast_reads = fast = FastCachedReads(cache, serving.auth, serving.metrics, settings.fast_cached_reads)
    app.add_middleware(fast.middleware)  # innermost: after the body guard and the access log
    # bounded bodies, and no body read for a caller without a key (inside observability: refusals are logged)
    app.add_middleware(RequestGuard, max_bytes=max(settings.request_max_bytes, settings.ingest_max_bytes),
                       key_check=_key_check(serving))
    app.add_middleware(RequestObservability, metrics=serving.metrics)  # request ids, access log, HTTP metrics

    app.include_router(metrics_router(serving, serving.metrics))
    app.include_router(ingest_router(settings, serving.publisher, serving.bound_tenant_dependency,
                                     metrics=serving.metrics))
    if serving.auth is not None:  # API keys on: tenants and keys are managed here
        app.include_router(admin_router(serving.auth))
    app.include_router(queries_router(serving))
    app.include_router(analytics_router(serving))  # funnels, retention, paths, sessions
    app.include_router(kpis_router(serving))
    app.include_router(profiles_router(serving))  # user profiles: profile.<property> in funnels and retention
    alert_store = AlertStore(store)
    app.include_router(alerts_router(serving, alert_store))
    app.include_router(live_router(serving))
    app.include_router(ws_router(serving))  # /v1/ws: the same feed over a WebSocket
    app.state.alert_evaluator = evaluator = build_evaluator(serving, alert_store)  # None when turned off

    @app.on_event("startup")
    async def _start_alert_evaluator() -> None:
        if evaluator is not None:
            evaluator.start()

    @app.on_event("shutdown")
    async def _stop_alert_evaluator() -> None:
        if evaluator is not None:
            await evaluator.stop()

    app.state.restatement_listener = listener = RestatementListener(settings.redis_url, cache)

    @app.on_event("startup")
    async def _start_cache_watchers() -> None:  # restated hours and the stream's writes make cached answers stale
        listener.start()
        if cache.writes is not None:
            cache.writes.start()

    @app.on_event("shutdown")
    async def _stop_cache_watchers() -> None:
        await listener.stop()
        if cache.writes is not None:
            await cache.writes.stop()

    app.include_router(dashboards_router(serving))
    app.include_router(report_schedules_router(serving))  # delivered by Dagster (orchestration/reports/)
    app.include_router(graphql_router(serving, alert_store))  # /graphql: the same services as REST
    install_web_ui(app)  # / → /ui/: the web dashboard and its vendored chart library
    if serving.auth is not None:
        document_key_security(app, serving.auth)  # OpenAPI: which operations take a key, and how to send it

    @app.get("/health", tags=["operations"], summary="Liveness and hot-tier reachability")
    def health() -> Any:
        try:
            store.query_arrow("SELECT 1")
        except HotStoreError as exc:
            return JSONResponse(status_code=503, content={"status": "degraded", "hot_store": str(exc)})
        return {"status": "ok", "hot_store": "ok", "embedded": settings.embedded_clickhouse}

    @app.get("/stats", tags=["operations"], summary="Counters: queries per tier and cache outcomes")
    def stats() -> Any:
        tiers = serving.engine.tier_queries
        return {"hot_queries": tiers["hot"], "tier_queries": tiers, "cache": cache.stats.as_dict(),
                "counters": dict(serving.counters)}  # e.g. rate_limited, rate_limit_local, auth_rejected

    @app.on_event("shutdown")
    async def _close() -> None:
        if serving.metrics.sampler is not None:
            serving.metrics.sampler.stop()
        serving.publisher.close()
        await cache.close()
        if serving.auth is not None:
            await serving.auth.close()

    return app


def build_serving(settings: Settings, store: HotStore, *, publisher: Publisher | None = None,
                  cache: QueryCache | None = None) -> Serving:
    """What every endpoint shares, API keys on, over ``store``; Kafka and Redis clients unless others are
    passed in (the component tests pass an in-memory publisher)."""
    # every tenant-scoped hot query within its tenant's slots: one tenant cannot take every query session
    slots = TenantQuerySlots(settings.hot_queries_per_tenant, settings.tenant_query_wait_seconds)
    store = TenantFairStore(store, slots)
    serving = Serving(
        settings=settings,
        store=store,
        engine=QueryEngine.for_settings(settings, store),
        cache=cache if cache is not None else QueryCache(
            settings.redis_url, writes=HotWrites(store, settings.cache_write_poll_seconds)),
        publisher=publisher if publisher is not None else EventPublisher(settings),
    )
    enable_api_keys(serving)  # every endpoint's tenant now comes from the caller's API key
    serving.metrics = ServingMetrics()
    return serving
