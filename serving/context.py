"""What every endpoint of the serving process shares, passed to the routers explicitly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Query

from common.hot_store import HotStore
from common.settings import Settings
from ingest.publisher import Publisher
from serving.analytics.kpis import KpiStore
from serving.cache import QueryCache
from serving.fast_reads import FastCachedReads
from serving.observability import ServingMetrics
from serving.query.engine import QueryEngine
from serving.tenancy.auth import ApiKeyAuth
from serving.tenancy.rate_limit import RateLimiter
from serving.tenancy.streams import StreamSlots
from serving.tenancy.tenants import TenantDirectory


def tenant_from_query(tenant: str = Query("default", description="the tenant whose data is read")) -> str:
    return tenant


def no_tenant_binding() -> str | None:
    """Ingestion without API keys: events keep the tenant they name."""
    return None


@dataclass
class Serving:
    settings: Settings
    store: HotStore
    engine: QueryEngine
    cache: QueryCache
    publisher: Publisher  # ingest.publisher.EventPublisher (Kafka) in production
    # FastAPI dependency resolving the caller's tenant (API keys replace the open default)
    tenant_dependency: Callable[..., Any] = tenant_from_query
    # ingestion: the tenant the caller's key is bound to (None: any, e.g. the admin key) — serving/tenancy/auth.py
    bound_tenant_dependency: Callable[..., Any] = no_tenant_binding
    auth: ApiKeyAuth | None = None  # set by enable_api_keys (admin routes, rate limits)
    counters: dict[str, int] = field(default_factory=dict)
    metrics: ServingMetrics | None = None  # Prometheus counters and histograms (serving/observability.py)
    streams: StreamSlots | None = None  # live streams open per key (WebSocket, GraphQL subscriptions)
    kpis: KpiStore | None = None  # the tenants' custom KPIs, usable wherever a metric is
    fast_reads: FastCachedReads | None = None  # cached GET answers before FastAPI's parameter handling (app.py)

    def __post_init__(self) -> None:
        if self.kpis is None:
            self.kpis = KpiStore(self.store)
        if self.streams is None:
            self.streams = StreamSlots(self.settings.live_max_streams_per_key)


def enable_api_keys(serving: Serving) -> ApiKeyAuth:
    """Switch ``serving`` from the open ``?tenant=`` to API keys (before its routers are built)."""
    buckets_url = serving.settings.rate_limit_redis_url or serving.settings.redis_url
    auth = ApiKeyAuth(serving.settings, TenantDirectory(serving.store), RateLimiter(buckets_url, serving.counters),
                      serving.counters)
    serving.auth = auth
    serving.tenant_dependency = auth.tenant_dependency
    serving.bound_tenant_dependency = auth.bound_tenant_dependency
    return auth
