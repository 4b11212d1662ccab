"""Answers a dashboard question: validate it, look in the cache, compute on a miss, within the timeout.

Every query endpoint (time series, breakdown, top-N, ad-hoc) and every saved widget goes through here, so
they share one cached answer per question and fail the same way: ``QueryError`` when the question cannot
be answered as asked, ``QueryTimeout`` past the timeout (with what to narrow), ``HotStoreError`` when the
hot tier is down. ``serving.errors`` maps those to 400, 504 and 503. It knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from common.events import format_optional_ts, format_ts
from common.settings import Settings
from serving.analytics.kpis import KpiStore
from serving.cache import EntryRange, QueryCache, cache_key, lifetime
from serving.query.compare import change, checked_comparison, previous_period, totals_of
from serving.query.engine import QueryEngine, QueryResult, QueryTimeout
from serving.query.spec import QuerySpec, SpecInput, build_spec, named_values

# What an endpoint adds to the answer's JSON from the spec and the engine's rows (its own shape).
Shape = Callable[[QuerySpec, QueryResult], dict[str, Any]]


@dataclass(frozen=True)
class Answer:
    body: bytes  # the answer's JSON, as cached
    how: str  # where it came from, for X-Cache: hit, stale, miss, coalesced or bypass (Redis down)
    tiers: str = "cache"  # the tiers that computed it for this request (hot, warm+hot …), else cache
    # the cache key when the same request would have it at any later time (a range ending at a given `to` or
    # a relative range, no tenant KPI): what the fast path of cached reads may file the URL under
    stable_key: str | None = None


def bucket_iso(epoch: int) -> str:
    """A bucket (epoch seconds, UTC) as the answers write it: ISO-8601 with ``Z``."""
    return format_ts(datetime.fromtimestamp(epoch, UTC), "auto")


def range_fields(spec: QuerySpec) -> dict[str, Any]:
    return {"from": format_ts(spec.start, "auto"), "to": format_ts(spec.end, "auto"), "granularity": spec.granularity}


def provenance(result: QueryResult) -> dict[str, Any]:
    read_from = format_optional_ts(result.read_from, "auto")
    return {"sources": result.sources, "read_from": read_from, "approximate": result.approximate,
            "error_bounds": result.error_bounds, "truncated": result.truncated, "took_ms": result.took_ms}


def query_table(spec: QuerySpec, result: QueryResult) -> dict[str, Any]:
    """Columns and rows of an ad-hoc answer, buckets as ISO-8601 (the shape of /v1/query and of widgets)."""
    rows = [[bucket_iso(r[0]), *r[1:]] for r in result.rows] if spec.granularity else result.rows
    return {"columns": result.columns, "rows": rows}


def query_answer(spec: QuerySpec, result: QueryResult) -> dict[str, Any]:
    """Range, columns, rows and provenance: what a saved widget answers, equal to ``POST /v1/query``'s."""
    return {**range_fields(spec), **query_table(spec, result), **provenance(result)}


def compared(engine: QueryEngine, tenant: str, spec: QuerySpec, now: datetime,
             shape: Callable[[QuerySpec, QueryResult], dict[str, Any]]) -> dict[str, Any]:
    """``previous`` (the previous period's range, shape and provenance) and ``totals`` (each metric's total in
    both periods and the change): what ``compare=previous_period`` adds to an answer."""
    before = previous_period(spec)
    answer = engine.run(tenant, before, now)
    totals = [engine.run(tenant, totals_of(s), now).rows for s in (spec, before)]
    return {"previous": {**range_fields(before), **shape(before, answer), **provenance(answer)},
            "totals": change(spec.metrics, *(rows[0] if rows else None for rows in totals))}


async def checked_spec(raw: SpecInput, tenant: str, now: datetime, kpis: KpiStore | None) -> QuerySpec:
    """``build_spec`` with the tenant's KPIs that the question names (looked up only when it names something
    outside the catalogue), so a KPI is accepted wherever a metric is."""
    wanted = named_values(raw)
    found = await run_in_threadpool(kpis.named, tenant, wanted) if wanted and kpis is not None else {}
    return build_spec(raw, now=now, kpis=found)


class QueryAnswers:
    """The query endpoints' service: one cached, time-limited answer per question."""

    def __init__(self, engine: QueryEngine, cache: QueryCache, settings: Settings,
                 kpis: KpiStore | None = None) -> None:
        self._engine = engine
        self._cache = cache
        self._settings = settings
        self._kpis = kpis

    async def answer(self, tenant: str, raw: SpecInput, shape: Shape, compare: str | None = None) -> Answer:
        """``{"tenant", from, to, granularity, **shape(spec, result), **provenance}`` as JSON, from the cache or
        computed now; ranges ending now are kept briefly and served stale while one request refreshes them."""
        settings = self._settings
        now = datetime.now(UTC)
        spec = await checked_spec(raw, tenant, now, self._kpis)
        compare = checked_comparison(compare)
        identity = spec.cache_identity() | ({"compare": compare} if compare else {})
        # the answer's shape is part of the key: a top-10 and a breakdown limited to 10 ask the same spec but
        # answer different JSON (REST and GraphQL share a shape, hence an entry)
        identity |= {"shape": f"{shape.__module__}.{shape.__qualname__}"}
        if raw.start is None and raw.end is None:  # relative ranges: the same question all along
            identity |= {"start": None, "end": None, "range": raw.range or "1h"}
        computed: list[str] = []  # the tiers that answered, when this request computed it

        def run() -> tuple[QueryResult, dict[str, Any]]:
            result = self._engine.run(tenant, spec, now)
            return result, (compared(self._engine, tenant, spec, now, shape) if compare else {})

        async def compute() -> bytes:
            result, extra = await asyncio.wait_for(run_in_threadpool(run), timeout=settings.query_timeout_seconds)
            computed.append("+".join(dict.fromkeys(s.split(":", 1)[0] for s in result.sources)))
            return orjson.dumps({"tenant": tenant, **range_fields(spec), **shape(spec, result), **provenance(result),
                                 **extra})

        key = cache_key(tenant, "query", identity)
        stable = (raw.end is not None or raw.start is None) and not named_values(raw)
        try:
            body, how = await self._cache.get_or_compute(
                key, compute=compute, **lifetime(settings, spec.end >= now - timedelta(minutes=1)),
                entry_range=EntryRange(tenant, previous_period(spec).start if compare else spec.start, spec.end))
        except TimeoutError as exc:  # the engine's QueryTimeout, or the wait above
            raise QueryTimeout(f"the query ran longer than {settings.query_timeout_seconds:g} s; narrow the range, "
                               "coarsen the granularity or add filters") from exc
        return Answer(body, how, computed[0] if computed else "cache", key if stable else None)
