"""Custom KPIs: CRUD of a tenant's named formulas and their values over time or by a dimension.

``GET /v1/kpis/{name}/data`` asks the query engine (tier routing, both dialects) for the catalogue metrics
the formula names and applies the formula row by row; the answer is cached like the dashboard queries,
under a key that includes the formula, so an edited KPI is never answered from its old definition.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from common.events import format_ts
from common.hot_store import HotStoreError
from serving.analytics.kpis import KpiNotFound, KpiStore, SavedKpi
from serving.cache import EntryRange, cache_key
from serving.context import Serving
from serving.query.csv_export import csv_filename, csv_requested, csv_response, stamp
from serving.query.engine import QueryTimeout
from serving.query.kpi import KpiError
from serving.query.spec import QueryError, SpecInput, build_spec, parse_filter_params


class KpiModel(BaseModel):
    name: str = Field(examples=["revenue_per_purchase"], description="lower-case letters, digits and _")
    formula: str = Field(examples=["revenue / purchases"],
                         description="catalogue metrics, numbers, + - * / and parentheses; x / 0 is null")
    description: str = ""


class KpiUpdate(BaseModel):
    formula: str
    description: str = ""


def _iso(epoch: int) -> str:
    return format_ts(datetime.fromtimestamp(epoch, UTC), "auto")


def kpis_router(serving: Serving) -> APIRouter:
    router = APIRouter(prefix="/v1/kpis", tags=["custom KPIs"])
    tenant_of = serving.tenant_dependency
    store = KpiStore(serving.store)

    def not_found(exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=404, content={"error": str(exc)})

    @router.get("", summary="The tenant's KPIs")
    async def list_kpis(tenant: str = Depends(tenant_of)) -> dict[str, Any]:
        return {"kpis": [k.as_json() for k in await run_in_threadpool(store.list, tenant)]}

    @router.post("", status_code=201, summary="Save a new KPI (409 if the name is taken)")
    async def create(tenant: str = Depends(tenant_of), body: KpiModel = Body(...)) -> Any:
        try:
            await run_in_threadpool(store.get, tenant, body.name)
            return JSONResponse(status_code=409, content={"error": f"KPI {body.name!r} exists; PUT to change it"})
        except KpiNotFound:
            pass
        try:
            saved = await run_in_threadpool(store.put, tenant, body.name, body.formula, body.description)
        except KpiError as exc:
            return JSONResponse(status_code=400, content={"error": str(exc)})
        return saved.as_json()

    @router.get("/{name}", summary="One KPI")
    async def get(name: str, tenant: str = Depends(tenant_of)) -> Any:
        try:
            return (await run_in_threadpool(store.get, tenant, name)).as_json()
        except KpiNotFound as exc:
            return not_found(exc)

    @router.put("/{name}", summary="Change a KPI's formula (the next version)")
    async def put(name: str, tenant: str = Depends(tenant_of), body: KpiUpdate = Body(...)) -> Any:
        try:
            await run_in_threadpool(store.get, tenant, name)
            saved = await run_in_threadpool(store.put, tenant, name, body.formula, body.description)
        except KpiNotFound as exc:
            return not_found(exc)
        except KpiError as exc:
            return JSONResponse(status_code=400, content={"error": str(exc)})
        return saved.as_json()

    @router.delete("/{name}", status_code=204, summary="Delete a KPI")
    async def delete(name: str, tenant: str = Depends(tenant_of)) -> Response:
        try:
            await run_in_threadpool(store.delete, tenant, name)
        except KpiNotFound as exc:
            return not_found(exc)
        return Response(status_code=204)

    @router.get("/{name}/data", summary="A KPI's value over time (granularity) or by a dimension (by)",
                description="e.g. `/v1/kpis/revenue_per_purchase/data?range=30d&granularity=day` or `?by=country`")
    async def data(
        name: str,
        tenant: str = Depends(tenant_of),
        range_: str | None = Query(None, alias="range"),
        from_: datetime | None = Query(None, alias="from"),
        to: datetime | None = None,
        granularity: str | None = Query(None, description="minute, hour, day, auto; omit for totals"),
        by: str | None = Query(None, description="a dimension to split by"),
        filter_: list[str] = Query([], alias="filter"),
        tier: str = "auto",
        as_csv: bool = Depends(csv_requested),
    ) -> Response:
        now = datetime.now(UTC)
        try:
            saved: SavedKpi = await run_in_threadpool(store.get, tenant, name)
            raw = SpecInput(metrics=saved.kpi.metrics, range=range_, start=from_, end=to, granularity=granularity,
                            dimensions=[by] if by else [], filters=parse_filter_params(filter_), tier=tier)
            spec = build_spec(raw, now=now)
        except KpiNotFound as exc:
            return not_found(exc)
        except QueryError as exc:
            return JSONResponse(status_code=400, content={"error": str(exc)})
        identity = {**spec.cache_identity(), "kpi": name, "formula": saved.kpi.formula}
        if from_ is None and to is None:
            identity |= {"start": None, "end": None, "range": range_ or "1h"}

        async def compute() -> bytes:
            result = await asyncio.wait_for(run_in_threadpool(serving.engine.run, tenant, spec, now),
                                            timeout=serving.settings.query_timeout_seconds)
            lead = (["bucket"] if spec.granularity else []) + list(spec.dimensions)
            rows = []
            for record in result.records():
                keys = [_iso(record["bucket"]) if k == "bucket" else record[k] for k in lead]
                rows.append([*keys, saved.kpi.value(record)])
            return orjson.dumps({
                "tenant": tenant, "kpi": name, "formula": saved.kpi.formula, "metrics": saved.kpi.metrics,
                "from": format_ts(spec.start, "auto"),
                "to": format_ts(spec.end, "auto"),
                "granularity": spec.granularity, "columns": [*lead, name], "rows": rows, "sources": result.sources,
                "approximate": [name] if result.approximate else [], "truncated": result.truncated,
                "took_ms": result.took_ms})

        open_range = spec.end >= now - timedelta(minutes=1)
        settings = serving.settings
        try:
            body, how = await serving.cache.get_or_compute(
                cache_key(tenant, "kpi", identity),
                settings.cache_open_ttl_seconds if open_range else settings.cache_ttl_seconds, compute,
                entry_range=EntryRange(tenant, spec.start, spec.end),
                stale_s=settings.cache_max_stale_seconds if open_range else 0.0)
        except QueryError as exc:
            return JSONResponse(status_code=400, content={"error": str(exc)})
        except (TimeoutError, QueryTimeout):
            return JSONResponse(status_code=504, content={"error": "the query ran too long; narrow the range"})
        except HotStoreError as exc:
            return JSONResponse(status_code=503, content={"error": str(exc)})
        if as_csv:
            payload = orjson.loads(body)
            return csv_response(payload["columns"], payload["rows"], csv_filename(f"kpi-{name}", stamp(payload["to"])),
                                {"X-Cache": how})
        return Response(body, media_type="application/json", headers={"X-Cache": how})

    return router
