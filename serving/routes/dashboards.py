"""Saved dashboards over HTTP: CRUD, every widget's answer in one request, and a widget as CSV.

Routes parse the request and shape the response; ``serving.services.dashboards`` decides, and
``serving.errors`` turns what it raises into the status (400 invalid, 404 unknown, 409 built-in,
412 stale If-Match, 503 hot tier down, 504 past the timeout).
"""

from __future__ import annotations

from typing import Literal

import orjson
from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationInfo, field_validator
from starlette.concurrency import run_in_threadpool

from serving.context import Serving
from serving.dashboards.store import ALL_CHARTS, MAX_WIDGETS, Dashboard, DashboardError, DashboardStore, Widget
from serving.query.csv_export import csv_filename, csv_response, stamp
from serving.query.models import QueryModel, spec_input, stored_query
from serving.query.spec import QueryError
from serving.reports.pdf import render_dashboard
from serving.routes.analytics import FunnelModel, PathsModel, RetentionModel
from serving.routes.analytics_widgets import (
    ANALYTICS_MODELS,
    SessionsQueryModel,
    check_analytics_query,
    stored_analytics_query,
)
from serving.services.dashboards import DashboardService, View, WidgetDraft


class WidgetModel(BaseModel):
    id: str | None = Field(None, description="unique in the dashboard; w1, w2 … when omitted")
    title: str = Field("", max_length=200)
    chart: Literal["line", "pie", "bar", "table", "number", "funnel", "retention", "paths", "sessions"] = Field(
        description=", ".join(ALL_CHARTS))
    query: QueryModel | FunnelModel | RetentionModel | PathsModel | SessionsQueryModel = Field(
        description="the JSON of POST /v1/query; for funnel, retention and paths the body of POST /v1/funnels, "
                    "/v1/retention or /v1/paths; for sessions the parameters of GET /v1/sessions")

    @field_validator("query", mode="before")
    @classmethod
    def _query_of_the_chart(cls, value: object, info: ValidationInfo) -> object:
        """Read the query with the model of the widget's chart (the union alone could pick another)."""
        model = ANALYTICS_MODELS.get(info.data.get("chart", ""), QueryModel)
        return model.model_validate(value) if isinstance(value, dict) else value

    def draft(self, position: int) -> WidgetDraft:
        if isinstance(self.query, QueryModel):
            return WidgetDraft(Widget(self.id or "", self.title, self.chart, stored_query(self.query)),
                               spec_input(self.query))
        try:
            check_analytics_query(self.chart, self.query)
        except QueryError as exc:
            raise DashboardError(f"widget {self.id or position}: {exc}") from None
        return WidgetDraft(Widget(self.id or "", self.title, self.chart, stored_analytics_query(self.query)), None)


class DashboardModel(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    widgets: list[WidgetModel] = Field(default_factory=list, max_length=MAX_WIDGETS)

    def drafts(self) -> list[WidgetDraft]:
        return [w.draft(i) for i, w in enumerate(self.widgets, start=1)]


def _dashboard(dashboard: Dashboard, status: int = 200) -> JSONResponse:
    return JSONResponse(status_code=status, content=dashboard.as_json(),
                        headers={"ETag": f'"{dashboard.version}"', "Location": f"/v1/dashboards/{dashboard.id}"})


def dashboards_router(serving: Serving, dashboards: DashboardStore | None = None) -> APIRouter:
    router = APIRouter(prefix="/v1/dashboards", tags=["dashboards"])
    tenant_of = serving.tenant_dependency
    service = DashboardService(dashboards or DashboardStore(serving.store), serving.engine, serving.cache,
                               serving.settings, serving.kpis)

    @router.post("", status_code=201, summary="Save a new dashboard (name and widgets)")
    async def create(tenant: str = Depends(tenant_of), body: DashboardModel = Body(...)) -> Response:
        return _dashboard(await service.create(tenant, body.name, body.drafts()), 201)

    @router.get("", summary="The tenant's dashboards, the built-in overview first")
    async def list_(tenant: str = Depends(tenant_of)) -> Response:
        return JSONResponse({"dashboards": [d.as_json() for d in await service.list(tenant)]})

    @router.get("/{dashboard_id}", summary="One dashboard; its ETag is its version")
    async def get(dashboard_id: str, tenant: str = Depends(tenant_of)) -> Response:
        return _dashboard(await service.get(tenant, dashboard_id))

    @router.put("/{dashboard_id}", summary="Replace a dashboard's name and widgets (If-Match: version to refuse "
                                          "overwriting a change you have not seen)")
    async def put(dashboard_id: str, tenant: str = Depends(tenant_of), body: DashboardModel = Body(...),
                  if_match: str | None = Header(None)) -> Response:
        return _dashboard(await service.replace(tenant, dashboard_id, body.name, body.drafts(), if_match))

    @router.delete("/{dashboard_id}", status_code=204, summary="Delete a dashboard")
    async def delete(dashboard_id: str, tenant: str = Depends(tenant_of),
                     if_match: str | None = Header(None)) -> Response:
        await service.delete(tenant, dashboard_id, if_match)
        return Response(status_code=204)

    async def charged_view(request: Request, tenant: str, dashboard_id: str, range_: str | None,
                           filter_: list[str], tz: str | None = None, compare: str | None = None) -> View:
        """The dashboard as asked, after taking one rate-limit token per widget (each runs a query)."""
        view = await service.view(tenant, dashboard_id, range_, filter_, tz, compare)
        if serving.auth is not None:
            widgets = max(1, sum(not w.analytics for w in view.dashboard.widgets))  # analytics: charged by theirs
            await serving.auth.charge(getattr(request.state, "caller", None), widgets - 1,
                                      f"dashboard {view.dashboard.id!r} ({widgets} widgets)")
        return view

    @router.get("/{dashboard_id}/data", summary="Every widget's answer in one request",
                description="`range` (1h, 24h, 7d … 7y) replaces each widget's own; `filter=country:US` (repeatable) "
                            "is added to each widget's filters (drill-down). Each widget answers what "
                            "POST /v1/query answers for its query, or says why it cannot (`error`).")
    async def data(
        request: Request,
        dashboard_id: str,
        tenant: str = Depends(tenant_of),
        range_: str | None = Query(None, alias="range", description="replaces every widget's range"),
        filter_: list[str] = Query([], alias="filter", description="dim:value, dim!=value, dim:a|b; repeatable"),
        tz: str | None = Query(None, description="IANA zone for every widget's day buckets (the viewer's)"),
        compare: str | None = Query(None, description="previous_period: each widget also answers `previous` "
                                                      "and `totals` with the change"),
    ) -> Response:
        view = await charged_view(request, tenant, dashboard_id, range_, filter_, tz, compare)
        answer = await service.data(tenant, view)
        return Response(answer.body, media_type="application/json", headers={"X-Cache": answer.how})

    @router.get("/{dashboard_id}/report.pdf", summary="The dashboard as a PDF report",
                description="A cover (title, tenant, range, filters, generation time), then one page per widget: "
                            "its chart and its numbers as a table; pages numbered. `range` and `filter` as for "
                            "`/data`, whose answer it prints.",
                response_class=Response, responses={200: {"content": {"application/pdf": {}}}})
    async def report(
        request: Request,
        dashboard_id: str,
        tenant: str = Depends(tenant_of),
        range_: str | None = Query(None, alias="range", description="replaces every widget's range"),
        filter_: list[str] = Query([], alias="filter", description="dim:value, dim!=value, dim:a|b; repeatable"),
    ) -> Response:
        view = await charged_view(request, tenant, dashboard_id, range_, filter_)
        answer = await service.data(tenant, view)
        pdf = await run_in_threadpool(render_dashboard, orjson.loads(answer.body), tenant)
        name = f"{view.dashboard.id}-{orjson.loads(answer.body)['generated_at'][:16].replace(':', '')}.pdf"
        return Response(pdf, media_type="application/pdf", headers={
            "Content-Disposition": f'attachment; filename="{name}"', "X-Cache": answer.how})

    @router.get("/{dashboard_id}/widgets/{widget_id}/data.csv", summary="One widget's answer as CSV",
                response_class=Response, responses={200: {"content": {"text/csv": {}}}})
    async def widget_csv(
        dashboard_id: str,
        widget_id: str,
        tenant: str = Depends(tenant_of),
        range_: str | None = Query(None, alias="range"),
        filter_: list[str] = Query([], alias="filter"),
    ) -> Response:
        view = await service.view(tenant, dashboard_id, range_, filter_)
        widget, payload, how = await service.widget_data(tenant, view, widget_id)
        name = csv_filename(view.dashboard.id, widget.id, stamp(payload["to"]))
        return csv_response(payload["columns"], payload["rows"], name, {"X-Cache": how})

    return router
