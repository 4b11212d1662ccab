"""Custom KPIs: CRUD of a tenant's named formulas and their values over time or by a dimension.

Routes parse and shape; ``serving.services.kpis`` decides and ``serving.errors`` maps its errors (404 unknown
KPI, 409 a taken name, 400 a formula that cannot be accepted). ``GET /v1/kpis/{name}/data`` is the query
naming the KPI as its metric, answered and cached like ``/v1/query`` (the formula is part of the cache key,
so an edited KPI is never answered from its old definition). A KPI's name is accepted wherever a metric's
is: time series, breakdowns, top-N, ad-hoc queries, dashboards and alert rules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from serving.context import Serving
from serving.query.csv_export import csv_filename, csv_requested, csv_response, stamp
from serving.services.kpis import KpiService
from serving.services.queries import QueryAnswers


class KpiModel(BaseModel):
    name: str = Field(examples=["revenue_per_purchase"], description="lower-case letters, digits and _")
    formula: str = Field(examples=["revenue / purchases"],
                         description="catalogue metrics, numbers, + - * / and parentheses; x / 0 is null")
    description: str = ""


class KpiUpdate(BaseModel):
    formula: str
    description: str = ""


def kpis_router(serving: Serving) -> APIRouter:
    router = APIRouter(prefix="/v1/kpis", tags=["custom KPIs"])
    tenant_of = serving.tenant_dependency
    assert serving.kpis is not None
    service = KpiService(serving.kpis, QueryAnswers(serving.engine, serving.cache, serving.settings, serving.kpis))

    @router.get("", summary="The tenant's KPIs")
    async def list_kpis(tenant: str = Depends(tenant_of)) -> dict[str, Any]:
        return {"kpis": [k.as_json() for k in await service.list(tenant)]}

    @router.post("", status_code=201, summary="Save a new KPI (409 if the name is taken)")
    async def create(tenant: str = Depends(tenant_of), body: KpiModel = Body(...)) -> dict[str, Any]:
        return (await service.create(tenant, body.name, body.formula, body.description)).as_json()

    @router.get("/{name}", summary="One KPI")
    async def get(name: str, tenant: str = Depends(tenant_of)) -> dict[str, Any]:
        return (await service.get(tenant, name)).as_json()

    @router.put("/{name}", summary="Change a KPI's formula (the next version)")
    async def put(name: str, tenant: str = Depends(tenant_of), body: KpiUpdate = Body(...)) -> dict[str, Any]:
        return (await service.replace(tenant, name, body.formula, body.description)).as_json()

    @router.delete("/{name}", status_code=204, summary="Delete a KPI")
    async def delete(name: str, tenant: str = Depends(tenant_of)) -> Response:
        await service.delete(tenant, name)
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
        answer = await service.data(tenant, name, range_, from_, to, granularity, by, filter_, tier)
        if as_csv:
            payload = orjson.loads(answer.body)
            return csv_response(payload["columns"], payload["rows"], csv_filename(f"kpi-{name}", stamp(payload["to"])),
                                {"X-Cache": answer.how})
        return Response(answer.body, media_type="application/json", headers={"X-Cache": answer.how})

    return router
