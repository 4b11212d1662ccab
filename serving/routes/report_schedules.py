"""Report schedules over the API: create, list, read, delete, and each schedule's delivery history.

A schedule belongs to the caller's tenant (``serving.tenant_dependency``) and names one of its dashboards;
another tenant's schedule or dashboard is a 404. The deliveries themselves are made by the Dagster job
``scheduled_report`` (orchestration/reports/), not by the API process.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from serving.context import Serving
from serving.dashboards.store import DashboardStore
from serving.reports.schedule_store import DeliveryLog, ScheduleStore
from serving.reports.schedules import MAX_RECIPIENTS, WEEKDAYS
from serving.services.reports import ReportSchedules, ScheduleDraft


class ScheduleIn(BaseModel):
    dashboard: str = Field(description="a saved dashboard's id (or `overview`)", examples=["overview"])
    cadence: Literal["daily", "weekly"] = Field(description="daily: the previous day; weekly: the 7 days before")
    at: str = Field(description="24-hour HH:MM in `tz` when the report is sent", examples=["08:00"])
    tz: str = Field("UTC", description="IANA zone of `at` and of the period's days", examples=["Europe/Paris"])
    weekday: str | None = Field(None, description=f"weekly only: {', '.join(WEEKDAYS)}")
    formats: list[Literal["pdf", "csv"]] = Field(["pdf", "csv"], min_length=1, max_length=2,
                                                 description="pdf: the dashboard; csv: one file per widget")
    email: list[str] = Field(default_factory=list, max_length=MAX_RECIPIENTS, description="recipients")
    webhook: str | None = Field(None, description="receives a multipart/form-data POST with the files",
                                examples=["https://example.com/hooks/reports"])
    filter: list[str] = Field(default_factory=list, description="dim:value, dim!=value, dim:a|b, as for "
                              "GET /v1/dashboards/{id}/data")

    def draft(self) -> ScheduleDraft:
        return ScheduleDraft(self.dashboard, self.cadence, self.at, self.tz, self.weekday, list(self.formats),
                             self.email, self.webhook, self.filter)


def report_schedules_router(serving: Serving) -> APIRouter:
    router = APIRouter(prefix="/v1/reports/schedules", tags=["reports"])
    tenant_of = serving.tenant_dependency
    settings = serving.settings
    service = ReportSchedules(ScheduleStore(serving.store), DashboardStore(serving.store),
                              DeliveryLog(serving.store, settings.report_claim_lease_seconds), settings)

    @router.post("", status_code=201, summary="Schedule a dashboard's report (PDF and/or CSV) by email and/or webhook")
    async def create(tenant: str = Depends(tenant_of), body: ScheduleIn = Body(...)) -> Response:
        schedule = await service.create(tenant, body.draft())
        return JSONResponse(schedule.as_json(), status_code=201,
                            headers={"Location": f"/v1/reports/schedules/{schedule.id}"})

    @router.get("", summary="The tenant's report schedules")
    async def list_(tenant: str = Depends(tenant_of)) -> Response:
        return JSONResponse({"schedules": [s.as_json() for s in await service.list(tenant)]})

    @router.get("/{schedule_id}", summary="One report schedule")
    async def get(schedule_id: str, tenant: str = Depends(tenant_of)) -> Response:
        return JSONResponse((await service.get(tenant, schedule_id)).as_json())

    @router.delete("/{schedule_id}", status_code=204, summary="Delete a report schedule (nothing more is sent)")
    async def delete(schedule_id: str, tenant: str = Depends(tenant_of)) -> Response:
        await service.delete(tenant, schedule_id)
        return Response(status_code=204)

    @router.get("/{schedule_id}/deliveries", summary="Claims, attempts, deliveries and failures, oldest first")
    async def deliveries(schedule_id: str, tenant: str = Depends(tenant_of)) -> Response:
        return JSONResponse({"schedule": schedule_id, "deliveries": await service.history(tenant, schedule_id)})

    return router
