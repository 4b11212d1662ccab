"""Product analytics' service: one cached, time-limited answer per funnel, retention, paths or sessions question.

The routes (``serving.routes.analytics``) turn a request into the engine's spec and the question's identity;
this decides the rest like every other query: the cache entry (per tenant and question, a TTL that is
short for ranges ending now, stale-while-revalidate), the timeout, and the domain errors — ``QueryError``
(400), ``QueryTimeout`` (504), ``AnalyticsEngineFailed`` (503, the engine that answers failed) — which
``serving.errors`` maps to statuses. It knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import duckdb
import orjson
from starlette.concurrency import run_in_threadpool

from common.hot_store import HotStoreError
from common.settings import Settings
from serving.analytics.engine import AnalyticsEngine
from serving.analytics.engine import Answer as EngineAnswer
from serving.cache import EntryRange, QueryCache, cache_key, lifetime
from serving.query.engine import QueryTimeout
from serving.services.queries import Answer


class AnalyticsEngineFailed(RuntimeError):
    """The engine answering the question (the hot tier or DuckDB over the lake) failed: try again shortly."""


class AnalyticsAnswers:
    def __init__(self, engine: AnalyticsEngine, cache: QueryCache, settings: Settings) -> None:
        self.engine = engine
        self._cache = cache
        self._settings = settings

    async def answer(self, tenant: str, kind: str, identity: dict[str, Any], span: tuple[datetime, datetime],
                     now: datetime, compute: Callable[[], EngineAnswer],
                     shape: Callable[[EngineAnswer], dict[str, Any]]) -> Answer:
        """``{"tenant", **shape(answer), "sources", "took_ms"}`` as JSON, cached under ``kind`` and ``identity``;
        ``span`` is the range of events the answer reads (a restatement inside it drops the entry)."""
        settings = self._settings

        async def run() -> bytes:
            result = await asyncio.wait_for(run_in_threadpool(compute), timeout=settings.query_timeout_seconds)
            return orjson.dumps({"tenant": tenant, **shape(result), "sources": result.sources,
                                 "took_ms": result.took_ms})

        try:
            body, how = await self._cache.get_or_compute(
                cache_key(tenant, kind, identity), compute=run, entry_range=EntryRange(tenant, span[0], span[1]),
                **lifetime(settings, span[1] >= now - timedelta(minutes=1)))
        except TimeoutError as exc:  # the engine's QueryTimeout, or the wait above
            raise QueryTimeout(f"the question ran longer than {settings.query_timeout_seconds:g} s; "
                               "narrow the range") from exc
        except (HotStoreError, duckdb.Error) as exc:
            raise AnalyticsEngineFailed(f"the engine failed: {exc}; try again shortly") from exc
        return Answer(body, how)
