"""The newest minutes of a metric, as every live transport sends them (SSE, WebSocket, GraphQL subscriptions).

One snapshot per question and interval: it comes through the query cache under a key shared by every viewer
of the same question, kept just under one interval, so a thousand open streams of one dashboard cost one
hot-tier query per interval whichever transport they use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from common.events import format_ts
from common.settings import Settings
from serving.analytics.kpis import KpiStore
from serving.cache import QueryCache, cache_key
from serving.query.engine import QueryEngine
from serving.query.kpi import Kpi
from serving.query.spec import QuerySpec, SpecInput, build_spec, parse_filter_params

MAX_MINUTES = 180


def _iso(epoch: int) -> str:
    return format_ts(datetime.fromtimestamp(epoch, UTC), "auto")


def minute_series(spec: QuerySpec, dims: list[str], rows: list[list[Any]], empty: Any = 0) -> list[dict[str, Any]]:
    """One series per group, every minute of the range present (minutes without events are ``empty``: 0 for a
    count or sum, None for a KPI, whose formula has no value over nothing)."""
    first = int(spec.start.timestamp())
    minutes = range(first, int(spec.end.timestamp()), 60)
    groups: dict[tuple, dict[int, Any]] = {}
    for row in rows:
        groups.setdefault(tuple(row[1:-1]), {})[int(row[0])] = row[-1]
    if not groups and not dims:
        groups[()] = {}
    return [{"group": dict(zip(dims, key, strict=True)), "points": [[_iso(m), values.get(m, empty)] for m in minutes]}
            for key, values in groups.items()]


@dataclass(frozen=True)
class LiveQuestion:
    """What a live stream shows: a metric's newest ``minutes``, one series per ``dims`` combination."""

    metric: str
    minutes: int
    dims: list[str]
    raw: SpecInput
    kpis: Mapping[str, Kpi] = field(default_factory=dict)  # the tenant's KPIs when the metric is one

    @classmethod
    def of(cls, metric: str, minutes: int, dims: list[str], filters: list[str],
           kpis: Mapping[str, Kpi] | None = None) -> LiveQuestion:
        """The question, checked now (``QueryError`` if it cannot be answered) so a stream never starts on it."""
        raw = SpecInput(metrics=[metric], range=f"{minutes}m", granularity="minute", dimensions=dims,
                        filters=parse_filter_params(filters))
        spec = build_spec(raw, now=datetime.now(UTC), kpis=kpis)
        return cls(metric, minutes, dims, raw, {k.name: k for k in spec.kpis})


class LiveFeed:
    def __init__(self, engine: QueryEngine, cache: QueryCache, settings: Settings,
                 kpis: KpiStore | None = None) -> None:
        self._engine = engine
        self._cache = cache
        self._settings = settings
        self._kpis = kpis

    async def question(self, tenant: str, metric: str, minutes: int, dims: list[str],
                       filters: list[str]) -> LiveQuestion:
        """``LiveQuestion.of`` with the tenant's KPIs, so a KPI streams like a catalogue metric (the KPI table
        is read only when the metric is not in the catalogue)."""
        kpis = await run_in_threadpool(self._kpis.named, tenant, [metric]) if self._kpis is not None else {}
        return LiveQuestion.of(metric, minutes, dims, filters, kpis)

    async def snapshot(self, tenant: str, question: LiveQuestion) -> bytes:
        """The question's newest minutes as JSON (``metric``, ``series``, ``at``, ``from``, ``to``, ``sources``)."""
        settings = self._settings
        now = datetime.now(UTC)
        spec = build_spec(question.raw, now=now, kpis=question.kpis)
        identity = spec.cache_identity() | {"start": None, "end": None, "range": question.raw.range, "live": True}

        async def compute() -> bytes:
            result = await asyncio.wait_for(run_in_threadpool(self._engine.run, tenant, spec, now),
                                            timeout=settings.query_timeout_seconds)
            return orjson.dumps({
                "metric": question.metric, "group_by": question.dims, "minutes": question.minutes,
                "at": format_ts(now, "auto"), "from": format_ts(spec.start, "auto"), "to": format_ts(now, "auto"),
                "series": minute_series(spec, question.dims, result.rows, None if spec.kpis else 0),
                "sources": result.sources,
            })

        # shared by every subscriber of the question; recomputed once the stream has written since (live)
        body, _ = await self._cache.get_or_compute(cache_key(tenant, "live", identity),
                                                   settings.live_interval_seconds * 0.9, compute, live=True)
        return body
