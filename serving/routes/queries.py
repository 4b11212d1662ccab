"""Dashboard query endpoints: time series, breakdown (pies, drill-down), top-N and ad-hoc JSON specs.

Routes parse the request and shape the answer; ``serving.services.queries`` decides (validation, cache,
timeout) and ``serving.errors`` turns what it raises into the status. All of them become one ``QuerySpec``
answered through the cache, so a line chart, a pie and a saved widget asking the same question share one
cached answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response

from serving.context import Serving
from serving.observability import current_route, request_fields
from serving.query.csv_export import csv_filename, csv_requested, csv_response, stamp
from serving.query.models import QueryModel, spec_input
from serving.query.spec import SpecInput
from serving.services import questions
from serving.services.queries import Answer, QueryAnswers, Shape, query_table

COMPARE_HELP = ("previous_period: also answer the range of equal length just before (`previous`) and each "
                "metric's total in both with the absolute and % change (`totals`)")

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


def respond(answer: Answer, export: CsvExport | None) -> Response:
    """The answer as JSON, or as the CSV of ``export`` (made from the same cached answer, no second query)."""
    if export is not None:
        payload = orjson.loads(answer.body)
        columns, rows = export[1](payload)
        return csv_response(columns, rows, csv_filename(export[0], stamp(payload["to"])), {"X-Cache": answer.how})
    return Response(answer.body, media_type="application/json", headers={"X-Cache": answer.how})


def queries_router(serving: Serving) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["queries"])
    tenant_of = serving.tenant_dependency
    answers = QueryAnswers(serving.engine, serving.cache, serving.settings, serving.kpis)

    async def answer(tenant: str, raw: SpecInput, shape: Shape, export: CsvExport | None = None,
                     compare: str | None = None) -> Response:
        """The service's answer as JSON or CSV; the tenant in the access log, the latency in the metrics."""
        started = time.perf_counter()
        request_fields()["tenant"] = tenant
        found = await answers.answer(tenant, raw, shape, compare)
        if export is None and found.stable_key is not None and serving.fast_reads is not None:
            serving.fast_reads.remember(found.stable_key, tenant)  # this URL, validated, may skip FastAPI next time
        if serving.metrics is not None:
            serving.metrics.observe_query(current_route(), found.tiers, time.perf_counter() - started)
        return respond(found, export)

    @router.get("/catalog", summary="The metrics, dimensions and granularities that can be queried")
    def catalog() -> dict[str, Any]:
        return questions.catalog()

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
        tz: str = Query("UTC", description="IANA time zone whose calendar days the day buckets are"),
        fill: str = Query("auto", description="empty buckets: auto (0 for counts and sums, a gap (null) for "
                                              "unique users), zero, null, or none (left out)"),
        compare: str | None = Query(None, description=COMPARE_HELP),
        as_csv: bool = Depends(csv_requested),
    ) -> Response:
        dims = [d for d in (group_by or "").split(",") if d]
        raw, shape = questions.timeseries(metric, dims, range_, from_, to, granularity, filter_, tier, tz=tz, fill=fill)
        export = (f"timeseries-{metric}", _series_table(dims, metric)) if as_csv else None
        return await answer(tenant, raw, shape, export, compare)

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
        compare: str | None = Query(None, description=COMPARE_HELP),
        as_csv: bool = Depends(csv_requested),
    ) -> Response:
        raw, shape = questions.breakdown(metric, by, range_, from_, to, filter_, limit, tier)
        export = (f"breakdown-{metric}-by-{by}", _rows_table([by, metric], [by, "value"])) if as_csv else None
        return await answer(tenant, raw, shape, export, compare)

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
        compare: str | None = Query(None, description=COMPARE_HELP),
        as_csv: bool = Depends(csv_requested),
    ) -> Response:
        raw, shape = questions.topn(metric, by, n, range_, from_, to, filter_, tier)
        columns = ["rank", by, metric]
        export = (f"topn-{metric}-by-{by}", _rows_table(columns, ["rank", by, "value"])) if as_csv else None
        return await answer(tenant, raw, shape, export, compare)

    @router.post("/query", summary="An ad-hoc query from a JSON spec (metrics, dimensions, filters, order, limit)")
    async def adhoc(
        tenant: str = Depends(tenant_of),
        query: QueryModel = Body(...),
        compare: str | None = Query(None, description=COMPARE_HELP),
        as_csv: bool = Depends(csv_requested),
    ) -> Response:
        export = (f"query-{'_'.join(query.metrics)}", _adhoc_table) if as_csv else None
        return await answer(tenant, spec_input(query), query_table, export, compare)

    return router

