"""Dashboard query endpoints: time series, breakdown (pies, drill-down), top-N and ad-hoc JSON specs.

All of them become one ``QuerySpec`` answered by the query engine through the cache, so a line chart,
a pie and a saved widget asking the same question share one cached answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from common.events import format_optional_ts, format_ts
from common.hot_store import HotStoreError
from serving.cache import EntryRange, cache_key
from serving.context import Serving
from serving.observability import current_route, request_fields
from serving.query.csv_export import csv_filename, csv_requested, csv_response, stamp
from serving.query.engine import QueryResult, QueryTimeout
from serving.query.spec import (
    DIMENSIONS,
    GRANULARITIES,
    METRICS,
    QueryError,
    QuerySpec,
    SpecInput,
    build_spec,
    parse_filter_params,
)


class FilterModel(BaseModel):
    field: str = Field(description="a dimension (event, country, device, page) or a metric (for value ranges)")
    op: str = Field("=", description="dimensions: =, !=, in, not in; metrics: >, >=, <, <=, between")
    value: str | float | None = None
    values: list[str | float] | None = None


class OrderModel(BaseModel):
    field: str
    direction: str = "desc"


class QueryModel(BaseModel):
    """An ad-hoc query. Names come from `/v1/catalog`; no SQL is accepted."""

    metrics: list[str] = Field(min_length=1, examples=[["page_views", "unique_users"]])
    dimensions: list[str] = Field(default_factory=list, examples=[["country"]])
    filters: list[FilterModel] = Field(default_factory=list)
    range: str | None = Field(None, description="15m, 6h, 7d, 1y … ending now (default 1h); or use from/to")
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None
    granularity: str | None = Field(None, description="minute, hour, day, auto; omit for one total per group")
    order_by: list[OrderModel] = Field(default_factory=list)
    limit: int | None = Field(None, ge=1, le=10_000)
    tier: str = Field("auto", description="auto routes by age; hot, warm or cold force one tier")

    model_config = {"populate_by_name": True}


def _iso(epoch: int) -> str:
    return format_ts(datetime.fromtimestamp(epoch, UTC), "auto")


def _range_fields(spec: QuerySpec) -> dict[str, Any]:
    return {"from": format_ts(spec.start, "auto"), "to": format_ts(spec.end, "auto"),
            "granularity": spec.granularity}


def _provenance(result: QueryResult) -> dict[str, Any]:
    read_from = format_optional_ts(result.read_from, "auto")
    return {"sources": result.sources, "read_from": read_from, "approximate": result.approximate,
            "truncated": result.truncated, "took_ms": result.took_ms}


def spec_input(query: QueryModel) -> SpecInput:
    """The JSON of ``POST /v1/query`` (also a saved widget's query) as the spec input ``build_spec`` checks."""
    return SpecInput(
        metrics=query.metrics, range=query.range, start=query.from_, end=query.to, granularity=query.granularity,
        dimensions=query.dimensions, limit=query.limit, tier=query.tier,
        filters=[f.model_dump(exclude_none=True) for f in query.filters],
        order_by=[o.model_dump() for o in query.order_by],
    )


def query_table(spec: QuerySpec, result: QueryResult) -> dict[str, Any]:
    """Columns and rows of an ad-hoc answer, buckets as ISO-8601 (the shape of /v1/query and of widgets)."""
    rows = [[_iso(r[0]), *r[1:]] for r in result.rows] if spec.granularity else result.rows
    return {"columns": result.columns, "rows": rows}


def query_answer(spec: QuerySpec, result: QueryResult) -> dict[str, Any]:
    """Range, columns, rows and provenance: what a saved widget answers, equal to ``POST /v1/query``'s."""
    return {**_range_fields(spec), **query_table(spec, result), **_provenance(result)}


# A CSV export: the download's name and the table (columns, rows) made from the JSON answer.
CsvExport = tuple[str, Callable[[dict[str, Any]], tuple[list[str], list[list[Any]]]]]


def _series_table(dims: list[str], metric: str) -> Callable[[dict[str, Any]], tuple[list[str], list[list[Any]]]]:
    def table(payload: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
        rows = [[p[0], *(s["group"][d] for d in dims), p[1]] for s in payload["series"] for p in s["points"]]
        return ["bucket", *dims, metric], rows
    return table


def _rows_table(columns: list[str], keys: list[str]) -> Callable[[dict[str, Any]], tuple[list[str], list[list[Any]]]]:
    def table(payload: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
        return columns, [[row[k] for k in keys] for row in payload["rows"]]
    return table


def _adhoc_table(payload: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    return payload["columns"], payload["rows"]


def queries_router(serving: Serving) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["queries"])
    tenant_of = serving.tenant_dependency

    async def answer(tenant: str, raw: SpecInput, shape: Any, export: CsvExport | None = None) -> Response:
        """Validate, look in the cache, compute on a miss, shape the JSON (or the CSV of ``export``, made from
        the same cached answer); errors as 400/503/504."""
        started = time.perf_counter()
        request_fields()["tenant"] = tenant
        now = datetime.now(UTC)
        try:
            spec = build_spec(raw, now=now)
        except QueryError as exc:
            return JSONResponse(status_code=400, content={"error": str(exc)})
        identity = spec.cache_identity()
        if raw.start is None and raw.end is None:  # relative ranges: the same question all along
            identity |= {"start": None, "end": None, "range": raw.range or "1h"}

        async def compute() -> bytes:
            result = await asyncio.wait_for(
                run_in_threadpool(serving.engine.run, tenant, spec, now), timeout=serving.settings.query_timeout_seconds
            )
            computed.append("+".join(dict.fromkeys(s.split(":", 1)[0] for s in result.sources)))
            return orjson.dumps({"tenant": tenant, **_range_fields(spec), **shape(spec, result), **_provenance(result)})

        open_range = spec.end >= now - timedelta(minutes=1)
        ttl = serving.settings.cache_open_ttl_seconds if open_range else serving.settings.cache_ttl_seconds
        stale = serving.settings.cache_max_stale_seconds if open_range else 0.0  # stale-while-revalidate
        computed: list[str] = []  # the tiers that answered, when this request computed it
        try:
            body, how = await serving.cache.get_or_compute(
                cache_key(tenant, "query", identity), ttl, compute,
                entry_range=EntryRange(tenant, spec.start, spec.end), stale_s=stale)
        except QueryError as exc:
            return JSONResponse(status_code=400, content={"error": str(exc)})
        except (TimeoutError, QueryTimeout):
            return JSONResponse(status_code=504, content={
                "error": f"the query ran longer than {serving.settings.query_timeout_seconds:g} s; narrow the range, "
                         "coarsen the granularity or add filters"})
        except HotStoreError as exc:
            return JSONResponse(status_code=503, content={"error": str(exc)})
        if serving.metrics is not None:
            serving.metrics.observe_query(current_route(), computed[0] if computed else "cache",
                                          time.perf_counter() - started)
        if export is not None:
            payload = orjson.loads(body)
            columns, rows = export[1](payload)
            return csv_response(columns, rows, csv_filename(export[0], stamp(payload["to"])), {"X-Cache": how})
        return Response(body, media_type="application/json", headers={"X-Cache": how})

    def get_input(metric: list[str], range_: str | None, from_: datetime | None, to: datetime | None,
                  filters: list[str], tier: str, **extra: Any) -> SpecInput:
        return SpecInput(metrics=metric, range=range_, start=from_, end=to, filters=parse_filter_params(filters),
                         tier=tier, **extra)

    @router.get("/catalog", summary="The metrics, dimensions and granularities that can be queried")
    def catalog() -> dict[str, Any]:
        return {"metrics": {name: m.description for name, m in METRICS.items()}, "dimensions": list(DIMENSIONS),
                "granularities": list(GRANULARITIES), "tiers": ["auto", "hot", "warm", "cold"]}

    @router.get("/timeseries", summary="A metric over time, optionally one line per dimension value",
                description="e.g. `/v1/timeseries?metric=page_views&range=7d&group_by=country&filter=device:mobile`")
    async def timeseries(
        tenant: str = Depends(tenant_of),
        metric: str = Query(..., description="a metric from /v1/catalog"),
        range_: str | None = Query(None, alias="range", description="15m, 6h, 7d, 1y (default 1h); or from/to"),
        from_: datetime | None = Query(None, alias="from"),
        to: datetime | None = None,
        granularity: str = Query("auto", description="minute, hour, day or auto (from the range)"),
        group_by: str | None = Query(None, description="comma-separated dimensions, one line per combination"),
        filter_: list[str] = Query([], alias="filter", description="dim:value, dim!=value, dim:a|b; repeatable"),
        tier: str = "auto",
        as_csv: bool = Depends(csv_requested),
    ) -> Response:
        dims = [d for d in (group_by or "").split(",") if d]

        def shape(spec: QuerySpec, result: QueryResult) -> dict[str, Any]:
            series: dict[tuple, dict[str, Any]] = {}
            for row in result.rows:
                key = tuple(row[1:-1])
                entry = series.setdefault(key, {"group": dict(zip(dims, key, strict=True)), "points": []})
                entry["points"].append([_iso(row[0]), row[-1]])
            return {"metric": metric, "group_by": dims, "series": list(series.values())}

        raw = get_input([metric], range_, from_, to, filter_, tier, granularity=granularity, dimensions=dims)
        export = (f"timeseries-{metric}", _series_table(dims, metric)) if as_csv else None
        return await answer(tenant, raw, shape, export)

    @router.get("/breakdown", summary="A metric split by one dimension (pies, tables); add filters to drill down",
                description="Drill-down: `/v1/breakdown?metric=events&by=page&filter=country:US&filter=device:mobile`")
    async def breakdown(
        tenant: str = Depends(tenant_of),
        metric: str = Query(...),
        by: str = Query(..., description="the dimension to split by"),
        range_: str | None = Query(None, alias="range"),
        from_: datetime | None = Query(None, alias="from"),
        to: datetime | None = None,
        filter_: list[str] = Query([], alias="filter"),
        limit: int = Query(100, ge=1, le=10_000),
        tier: str = "auto",
        as_csv: bool = Depends(csv_requested),
    ) -> Response:
        def shape(spec: QuerySpec, result: QueryResult) -> dict[str, Any]:
            return {"metric": metric, "by": by, "filters": [list(f) for f in _echo(spec)],
                    "rows": [{by: row[0], "value": row[1]} for row in result.rows]}

        raw = get_input([metric], range_, from_, to, filter_, tier, dimensions=[by], limit=limit,
                        order_by=[{"field": metric, "direction": "desc"}])
        export = (f"breakdown-{metric}-by-{by}", _rows_table([by, metric], [by, "value"])) if as_csv else None
        return await answer(tenant, raw, shape, export)

    @router.get("/topn", summary="The N largest values of a dimension by a metric")
    async def topn(
        tenant: str = Depends(tenant_of),
        metric: str = Query(...),
        by: str = Query(...),
        n: int = Query(10, ge=1, le=1000),
        range_: str | None = Query(None, alias="range"),
        from_: datetime | None = Query(None, alias="from"),
        to: datetime | None = None,
        filter_: list[str] = Query([], alias="filter"),
        tier: str = "auto",
        as_csv: bool = Depends(csv_requested),
    ) -> Response:
        def shape(spec: QuerySpec, result: QueryResult) -> dict[str, Any]:
            return {"metric": metric, "by": by, "n": n,
                    "rows": [{"rank": i + 1, by: row[0], "value": row[1]} for i, row in enumerate(result.rows)]}

        raw = get_input([metric], range_, from_, to, filter_, tier, dimensions=[by], limit=n,
                        order_by=[{"field": metric, "direction": "desc"}])
        columns = ["rank", by, metric]
        export = (f"topn-{metric}-by-{by}", _rows_table(columns, ["rank", by, "value"])) if as_csv else None
        return await answer(tenant, raw, shape, export)

    @router.post("/query", summary="An ad-hoc query from a JSON spec (metrics, dimensions, filters, order, limit)")
    async def adhoc(
        tenant: str = Depends(tenant_of),
        query: QueryModel = Body(...),
        as_csv: bool = Depends(csv_requested),
    ) -> Response:
        export = (f"query-{'_'.join(query.metrics)}", _adhoc_table) if as_csv else None
        return await answer(tenant, spec_input(query), query_table, export)

    return router


def _echo(spec: QuerySpec) -> list[tuple[str, str, list[Any]]]:
    return [(f.field, f.op, list(f.values)) for f in spec.filters]
