"""GraphQL's report schedules: list, read, create and delete, as ``/v1/reports/schedules`` does.

A schedule is checked by REST's request model and saved by the same service (``ReportSchedules``), so the
same draft is accepted or refused with the same message; another tenant's schedule id is not found (404).
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from serving.graphql_api.fields import FilterArg, charged, validated
from serving.reports.schedules import ReportSchedule as SavedSchedule
from serving.routes.report_schedules import ScheduleIn


@strawberry.type(description="A dashboard's report sent on a schedule (GET /v1/reports/schedules/{id})")
class ReportSchedule:
    id: strawberry.ID
    dashboard: str
    cadence: str
    at: str
    tz: str
    weekday: str | None
    formats: list[str]
    email: list[str]
    webhook: str | None
    filter: list[str]
    created: str

    @strawberry.field(description="Claims, attempts, deliveries and failures, oldest first "
                                  "(GET /v1/reports/schedules/{id}/deliveries)")
    async def deliveries(self, info: Info) -> JSON:
        ctx = await charged(info)
        return await ctx.reports.history(ctx.tenant, str(self.id))


def _schedule(saved: SavedSchedule) -> ReportSchedule:
    body: dict[str, Any] = {"weekday": None, **saved.as_json()}
    return ReportSchedule(**{**body, "id": strawberry.ID(body["id"])})


async def report_schedules(info: Info) -> list[ReportSchedule]:
    ctx = await charged(info)
    return [_schedule(s) for s in await ctx.reports.list(ctx.tenant)]


async def report_schedule(info: Info, id: strawberry.ID) -> ReportSchedule:
    ctx = await charged(info)
    return _schedule(await ctx.reports.get(ctx.tenant, str(id)))


async def create_report_schedule(info: Info, dashboard: str, cadence: str, at: str, tz: str = "UTC",
                                 weekday: str | None = None, formats: list[str] | None = None,
                                 email: list[str] | None = None, webhook: str | None = None,
                                 filter: FilterArg = None) -> ReportSchedule:
    ctx = await charged(info)
    body = validated(ScheduleIn, {"dashboard": dashboard, "cadence": cadence, "at": at, "tz": tz, "weekday": weekday,
                                  "formats": ["pdf", "csv"] if formats is None else formats, "email": email or [],
                                  "webhook": webhook, "filter": filter or []}, "report schedule")
    return _schedule(await ctx.reports.create(ctx.tenant, body.draft()))


async def delete_report_schedule(info: Info, id: strawberry.ID) -> bool:
    ctx = await charged(info)
    await ctx.reports.delete(ctx.tenant, str(id))
    return True
