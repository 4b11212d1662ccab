"""What every endpoint of the serving process shares, passed to the routers explicitly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Query

from common.hot_store import HotStore
from common.settings import Settings
from ingest.publisher import EventPublisher
from serving.cache import QueryCache
from serving.query_engine import QueryEngine


def tenant_from_query(tenant: str = Query("default", description="the tenant whose data is read")) -> str:
    return tenant


@dataclass
class Serving:
    settings: Settings
    store: HotStore
    engine: QueryEngine
    cache: QueryCache
    publisher: EventPublisher
    # FastAPI dependency resolving the caller's tenant (API keys replace the open default)
    tenant_dependency: Callable[..., Any] = tenant_from_query
    counters: dict[str, int] = field(default_factory=dict)
