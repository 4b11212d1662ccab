"""Saved dashboards over HTTP: CRUD, every widget's answer in one request, and a widget as CSV.

``GET /v1/dashboards/{id}/data`` answers all widgets at once (the web dashboard makes one request per
refresh); a dashboard-level ``range`` replaces each widget's and ``filter`` (drill-down) is added to each
widget's. The whole answer is cached per tenant × dashboard × version × range × filters, so a saved change
is never answered from an older definition and a hundred viewers of one dashboard cost one computation.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Body, Depends, Header, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from common.events import format_ts
from common.hot_store import HotStoreError
from serving.cache import EntryRange, cache_key
from serving.context import Serving
from serving.dashboards.store import (
    CHARTS,
    MAX_WIDGETS,
    Dashboard,
    DashboardConflict,
    DashboardError,
    DashboardNotFound,
    DashboardStore,
    VersionMismatch,
    Widget,
    check_widgets,
    with_overrides,
)
from serving.query.csv_export import csv_filename, csv_response, stamp
from serving.query.engine import QueryTimeout
from serving.query.spec import QueryError, QuerySpec, build_spec, parse_filter_params, parse_range
from serving.routes.queries import QueryModel, query_answer, spec_input


class WidgetModel(BaseModel):
    id: str | None = Field(None, description="unique in the dashboard; w1, w2 … when omitted")
    title: str = Field("", max_length=200)
    chart: Literal["line", "pie", "bar", "table", "number"] = Field(description=", ".join(CHARTS))
    query: QueryModel = Field(description="the JSON of POST /v1/query")


class DashboardModel(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    widgets: list[WidgetModel] = Field(default_factory=list, max_length=MAX_WIDGETS)


def _query_json(query: QueryModel) -> dict[str, Any]:
    return query.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True) | {
        "metrics": query.metrics}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def _version(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    try:
        return int(if_match.strip().strip('"').removeprefix("W/").strip('"'))
    except ValueError:
        raise DashboardError(f"If-Match must be a dashboard version (its ETag), got {if_match!r}") from None


def dashboards_router(serving: Serving, dashboards: DashboardStore | None = None) -> APIRouter:
    router = APIRouter(prefix="/v1/dashboards", tags=["dashboards"])
    tenant_of = serving.tenant_dependency
    store = dashboards or DashboardStore(serving.store)

    async def call(fn: Any, *args: Any) -> Any:
        """A store call off the event loop; domain errors become 400/404/412/409, a dead hot store 503."""
        try:
            return await run_in_threadpool(fn, *args)
        except DashboardNotFound as exc:
            return _error(404, str(exc))
        except VersionMismatch as exc:
            return _error(412, str(exc))
        except DashboardConflict as exc:
            return _error(409, str(exc))
        except (DashboardError, QueryError) as exc:
            return _error(400, str(exc))
        except HotStoreError as exc:
            return _error(503, str(exc))

    def validated(body: DashboardModel) -> tuple[Widget, ...]:
        now = datetime.now(UTC)
        specs = []
        for i, w in enumerate(body.widgets):
            try:
                specs.append(build_spec(spec_input(w.query), now=now))
            except QueryError as exc:
                raise DashboardError(f"widget {w.id or i + 1}: {exc}") from None
        widgets = [Widget(w.id or "", w.title, w.chart, _query_json(w.query)) for w in body.widgets]
        return check_widgets(widgets, specs)

    def dashboard_response(dashboard: Dashboard, status: int = 200) -> JSONResponse:
        return JSONResponse(status_code=status, content=dashboard.as_json(),
                            headers={"ETag": f'"{dashboard.version}"', "Location": f"/v1/dashboards/{dashboard.id}"})

    @router.post("", status_code=201, summary="Save a new dashboard (name and widgets)")
    async def create(tenant: str = Depends(tenant_of), body: DashboardModel = Body(...)) -> Response:
        made = await call(lambda: store.create(tenant, body.name, validated(body)))
        return made if isinstance(made, Response) else dashboard_response(made, 201)

    @router.get("", summary="The tenant's dashboards, the built-in overview first")
    async def list_(tenant: str = Depends(tenant_of)) -> Response:
        found = await call(store.list, tenant)
        if isinstance(found, Response):
            return found
        return JSONResponse({"dashboards": [d.as_json() for d in found]})

    @router.get("/{dashboard_id}", summary="One dashboard; its ETag is its version")
    async def get(dashboard_id: str, tenant: str = Depends(tenant_of)) -> Response:
        found = await call(store.get, tenant, dashboard_id)
        return found if isinstance(found, Response) else dashboard_response(found)

    @router.put("/{dashboard_id}", summary="Replace a dashboard's name and widgets (If-Match: version to refuse "
                                          "overwriting a change you have not seen)")
    async def put(dashboard_id: str, tenant: str = Depends(tenant_of), body: DashboardModel = Body(...),
                  if_match: str | None = Header(None)) -> Response:
        saved = await call(lambda: store.replace(tenant, dashboard_id, body.name, validated(body), _version(if_match)))
        return saved if isinstance(saved, Response) else dashboard_response(saved)

    @router.delete("/{dashboard_id}", status_code=204, summary="Delete a dashboard")
    async def delete(dashboard_id: str, tenant: str = Depends(tenant_of),
                     if_match: str | None = Header(None)) -> Response:
        done = await call(lambda: store.delete(tenant, dashboard_id, _version(if_match)))
        return done if isinstance(done, Response) else Response(status_code=204)

    def plan(widgets: tuple[Widget, ...], range_: str | None, filters: list[dict[str, Any]],
             now: datetime) -> list[tuple[Widget, QuerySpec | str]]:
        """Each widget's spec as viewed (dashboard range and filters applied), or why it cannot be shown so
        (e.g. minute buckets over 7 years): that widget says so, the others still answer."""
        planned: list[tuple[Widget, QuerySpec | str]] = []
        for widget in widgets:
            try:
                raw = with_overrides(spec_input(QueryModel.model_validate(widget.query)), range_, filters)
                planned.append((widget, build_spec(raw, now=now)))
            except QueryError as exc:
                planned.append((widget, str(exc)))
        return planned

    async def run_widget(tenant: str, widget: Widget, spec: QuerySpec | str, now: datetime) -> dict[str, Any]:
        if isinstance(spec, str):
            return {**widget.as_json(), "error": spec}
        try:
            result = await run_in_threadpool(serving.engine.run, tenant, spec, now)
        except QueryError as exc:
            return {**widget.as_json(), "error": str(exc)}
        return {**widget.as_json(), **query_answer(spec, result)}

    async def answer_cached(tenant: str, identity: dict[str, Any], planned: list[tuple[Widget, QuerySpec | str]],
                            now: datetime, shape: Any) -> Response | tuple[bytes, str]:
        """Run the planned widgets through the cache (one entry per identity); errors as 503/504."""
        specs = [s for _, s in planned if not isinstance(s, str)]
        live = any(s.end >= now - timedelta(minutes=1) for s in specs)  # ranges ending now: short TTL
        ttl = serving.settings.cache_open_ttl_seconds if live else serving.settings.cache_ttl_seconds
        stale = serving.settings.cache_max_stale_seconds if live else 0.0  # stale-while-revalidate, as /v1 queries
        # the span of every widget's range: a restatement of any hour in it drops this entry
        span = EntryRange(tenant, min(s.start for s in specs), max(s.end for s in specs)) if specs else None

        async def compute() -> bytes:
            answers = await asyncio.wait_for(asyncio.gather(*(run_widget(tenant, w, s, now) for w, s in planned)),
                                             timeout=serving.settings.query_timeout_seconds)
            return orjson.dumps(shape(list(answers)))

        try:
            return await serving.cache.get_or_compute(cache_key(tenant, "dashboard", identity), ttl, compute,
                                                      entry_range=span, stale_s=stale)
        except (TimeoutError, QueryTimeout):
            return _error(504, f"the dashboard's queries ran longer than {serving.settings.query_timeout_seconds:g} s;"
                               " pick a shorter range or add filters")
        except HotStoreError as exc:
            return _error(503, str(exc))

    async def view(tenant: str, dashboard_id: str, range_: str | None,
                   filter_: list[str]) -> Response | tuple[Dashboard, list[dict[str, Any]]]:
        """The dashboard and the parsed view parameters, or the error response."""
        try:
            if range_:
                parse_range(range_)
            filters = parse_filter_params(filter_)
        except QueryError as exc:
            return _error(400, str(exc))
        dashboard = await call(store.get, tenant, dashboard_id)
        return dashboard if isinstance(dashboard, Response) else (dashboard, filters)

    def identity(dashboard: Dashboard, range_: str | None, filters: list[dict[str, Any]],
                 **extra: str) -> dict[str, Any]:
        return {"id": dashboard.id, "version": dashboard.version, "range": range_, **extra,
                "filters": sorted(orjson.dumps(f, option=orjson.OPT_SORT_KEYS).decode() for f in filters)}

    @router.get("/{dashboard_id}/data", summary="Every widget's answer in one request",
                description="`range` (1h, 24h, 7d … 7y) replaces each widget's own; `filter=country:US` (repeatable) "
                            "is added to each widget's filters (drill-down). Each widget answers what "
                            "POST /v1/query answers for its query, or says why it cannot (`error`).")
    async def data(
        dashboard_id: str,
        tenant: str = Depends(tenant_of),
        range_: str | None = Query(None, alias="range", description="replaces every widget's range"),
        filter_: list[str] = Query([], alias="filter", description="dim:value, dim!=value, dim:a|b; repeatable"),
    ) -> Response:
        found = await view(tenant, dashboard_id, range_, filter_)
        if isinstance(found, Response):
            return found
        dashboard, filters = found
        now = datetime.now(UTC)

        def shape(answers: list[dict[str, Any]]) -> dict[str, Any]:
            return {"dashboard": dashboard.id, "name": dashboard.name, "version": dashboard.version,
                    "range": range_, "filters": filters, "generated_at": format_ts(now, "auto"),
                    "widgets": answers}

        answer = await answer_cached(tenant, identity(dashboard, range_, filters),
                                     plan(dashboard.widgets, range_, filters, now), now, shape)
        if isinstance(answer, Response):
            return answer
        body, how = answer
        return Response(body, media_type="application/json", headers={"X-Cache": how})

    @router.get("/{dashboard_id}/widgets/{widget_id}/data.csv", summary="One widget's answer as CSV",
                response_class=Response, responses={200: {"content": {"text/csv": {}}}})
    async def widget_csv(
        dashboard_id: str,
        widget_id: str,
        tenant: str = Depends(tenant_of),
        range_: str | None = Query(None, alias="range"),
        filter_: list[str] = Query([], alias="filter"),
    ) -> Response:
        found = await view(tenant, dashboard_id, range_, filter_)
        if isinstance(found, Response):
            return found
        dashboard, filters = found
        try:
            widget = dashboard.widget(widget_id)
        except DashboardNotFound as exc:
            return _error(404, str(exc))
        now = datetime.now(UTC)
        answer = await answer_cached(tenant, identity(dashboard, range_, filters, widget=widget.id),
                                     plan((widget,), range_, filters, now), now, lambda answers: answers[0])
        if isinstance(answer, Response):
            return answer
        body, how = answer
        payload = orjson.loads(body)
        if "error" in payload:
            return _error(400, f"widget {widget.id!r}: {payload['error']}")
        name = csv_filename(dashboard.id, widget.id, stamp(payload["to"]))
        return csv_response(payload["columns"], payload["rows"], name, {"X-Cache": how})

    return router
