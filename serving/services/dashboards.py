"""Saved dashboards' service: checks and saves them, and answers every widget of one in a request.

``GET /v1/dashboards/{id}/data`` answers all widgets at once (the web dashboard makes one request per
refresh); a dashboard-level ``range`` replaces each widget's and ``filter`` (drill-down) is added to each
widget's. The whole answer is cached per tenant × dashboard × version × range × filters, so a saved change
is never answered from an older definition and a hundred viewers of one dashboard cost one computation.
An analytics widget (funnel, retention, paths, sessions) answers with the request of its own endpoint as
viewed (the dashboard's range applied), which the page sends: those endpoints have their own cache, CSV
and drill-down (who dropped off), so the dashboard does not compute them twice.

Failures are the domain's (``serving.dashboards.store``: not found, conflict, version mismatch, invalid;
``QueryError``, ``QueryTimeout``, ``HotStoreError``); ``serving.errors`` maps them to HTTP statuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from common.events import format_ts
from common.settings import Settings
from serving.analytics.kpis import KpiStore
from serving.cache import EntryRange, QueryCache, cache_key, lifetime
from serving.dashboards.store import (
    ANALYTICS_ENDPOINTS,
    Dashboard,
    DashboardError,
    DashboardStore,
    Widget,
    check_widgets,
    with_overrides,
)
from serving.query.buckets import BadTimeZone, zone
from serving.query.compare import checked_comparison, previous_period
from serving.query.engine import QueryEngine, QueryTimeout
from serving.query.kpi import Kpi
from serving.query.models import QueryModel, spec_input
from serving.query.spec import (
    InvalidParameter,
    QueryError,
    QuerySpec,
    SpecInput,
    build_spec,
    named_values,
    parse_filter_params,
    parse_range,
)
from serving.services.queries import Answer, compared, query_answer, query_table


@dataclass(frozen=True)
class WidgetDraft:
    """A widget as a client sends it: the widget to keep and its query as the spec input to check (None: an
    analytics widget, whose request its endpoint's rules checked when it was parsed)."""

    widget: Widget
    query: SpecInput | None


def expected_version(if_match: str | None) -> int | None:
    """The version an ``If-Match`` header (the dashboard's ETag) names; None for none or ``*``."""
    if if_match is None or if_match.strip() == "*":
        return None
    try:
        return int(if_match.strip().strip('"').removeprefix("W/").strip('"'))
    except ValueError:
        raise DashboardError(f"If-Match must be a dashboard version (its ETag), got {if_match!r}") from None


def checked(drafts: Sequence[WidgetDraft], kpis: Mapping[str, Kpi] | None = None) -> tuple[Widget, ...]:
    """The widgets if every query can be answered and fits its chart; else ``DashboardError`` naming the widget.
    ``kpis``: the tenant's KPIs the queries name, accepted where a metric is."""
    now = datetime.now(UTC)
    specs: list[QuerySpec | None] = []
    for i, draft in enumerate(drafts):
        if draft.query is None:
            specs.append(None)
            continue
        try:
            specs.append(build_spec(draft.query, now=now, kpis=kpis))
        except QueryError as exc:
            raise DashboardError(f"widget {draft.widget.id or i + 1}: {exc}") from None
    return check_widgets([d.widget for d in drafts], specs)


# a widget as planned: its spec, why it cannot be shown, or (analytics) the request the page sends
Planned = QuerySpec | str | dict[str, Any]


def analytics_request(widget: Widget, range_: str | None) -> dict[str, Any]:
    """The request that answers an analytics widget as viewed: the dashboard's range replaces its own."""
    method, path = ANALYTICS_ENDPOINTS[widget.chart]
    query = dict(widget.query)
    if range_:
        query = {k: v for k, v in query.items() if k not in ("from", "to")} | {"range": range_}
    return {"method": method, "path": path, ("params" if method == "GET" else "body"): query}


@dataclass(frozen=True)
class View:
    """A dashboard as asked to be viewed: its range (None: each widget's own) and drill-down filters."""

    dashboard: Dashboard
    range: str | None
    filters: list[dict[str, Any]]
    tz: str | None = None  # the viewer's zone: replaces every widget's own (day buckets)
    compare: str | None = None  # previous_period: each widget also answers the period before
    # a fixed [from, to) that replaces every widget's range (a scheduled report's period); wins over `range`
    span: tuple[datetime, datetime] | None = None

    def identity(self, **extra: str) -> dict[str, Any]:
        fixed = {"span": [t.isoformat() for t in self.span]} if self.span else {}
        return {"id": self.dashboard.id, "version": self.dashboard.version, "range": self.range, **extra, **fixed,
                **({"tz": self.tz} if self.tz else {}), **({"compare": self.compare} if self.compare else {}),
                "filters": sorted(orjson.dumps(f, option=orjson.OPT_SORT_KEYS).decode() for f in self.filters)}


class DashboardService:
    """CRUD off the event loop, and the cached, time-limited answers of a dashboard's widgets."""

    def __init__(self, store: DashboardStore, engine: QueryEngine, cache: QueryCache, settings: Settings,
                 kpis: KpiStore | None = None) -> None:
        self._store = store
        self._engine = engine
        self._cache = cache
        self._settings = settings
        self._kpis = kpis

    def _tenant_kpis(self, tenant: str, queries: Sequence[SpecInput]) -> dict[str, Kpi]:
        """The tenant's KPIs that the queries name (blocking; no lookup when they name catalogue metrics only)."""
        wanted = set().union(*(named_values(q) for q in queries)) if queries else set()
        return self._kpis.named(tenant, wanted) if wanted and self._kpis is not None else {}

    def _checked(self, tenant: str, drafts: Sequence[WidgetDraft]) -> tuple[Widget, ...]:
        return checked(drafts, self._tenant_kpis(tenant, [d.query for d in drafts if d.query is not None]))

    async def create(self, tenant: str, name: str, drafts: Sequence[WidgetDraft]) -> Dashboard:
        return await run_in_threadpool(lambda: self._store.create(tenant, name, self._checked(tenant, drafts)))

    async def list(self, tenant: str) -> list[Dashboard]:
        return await run_in_threadpool(self._store.list, tenant)

    async def get(self, tenant: str, dashboard_id: str) -> Dashboard:
        return await run_in_threadpool(self._store.get, tenant, dashboard_id)

    async def replace(self, tenant: str, dashboard_id: str, name: str, drafts: Sequence[WidgetDraft],
                      if_match: str | None) -> Dashboard:
        return await run_in_threadpool(
            lambda: self._store.replace(tenant, dashboard_id, name, self._checked(tenant, drafts),
                                        expected_version(if_match)))

    async def delete(self, tenant: str, dashboard_id: str, if_match: str | None) -> None:
        await run_in_threadpool(lambda: self._store.delete(tenant, dashboard_id, expected_version(if_match)))

    async def view(self, tenant: str, dashboard_id: str, range_: str | None, filter_params: list[str],
                   tz: str | None = None, compare: str | None = None) -> View:
        """The dashboard and the view's parameters, checked before anything is read."""
        if range_:
            parse_range(range_)
        filters = parse_filter_params(filter_params)
        if tz is not None:
            try:
                zone(tz)
            except BadTimeZone as exc:
                raise InvalidParameter(str(exc)) from None
        return View(await self.get(tenant, dashboard_id), range_, filters, tz, checked_comparison(compare))

    async def data(self, tenant: str, view: View) -> Answer:
        """Every widget's answer (or why it cannot be shown so) in one JSON document."""
        now = datetime.now(UTC)
        dashboard = view.dashboard

        def shape(answers: list[dict[str, Any]]) -> dict[str, Any]:
            return {"dashboard": dashboard.id, "name": dashboard.name, "version": dashboard.version,
                    "range": view.range, "filters": view.filters,
                    "generated_at": format_ts(now, "auto"), "widgets": answers}

        planned = await run_in_threadpool(self._plan, tenant, dashboard.widgets, view, now)
        return await self._cached(tenant, view.identity(), planned, now, shape, view.compare)

    async def widget_data(self, tenant: str, view: View, widget_id: str) -> tuple[Widget, dict[str, Any], str]:
        """One widget's answer as a table (for CSV) and how it came (X-Cache); ``QueryError`` if it cannot be
        shown so, e.g. minute buckets over years."""
        widget = view.dashboard.widget(widget_id)
        if widget.analytics:
            method, path = ANALYTICS_ENDPOINTS[widget.chart]
            raise QueryError(f"widget {widget.id!r} is a {widget.chart}: its CSV is {method} {path}?format=csv "
                             "with the widget's query")
        now = datetime.now(UTC)
        planned = await run_in_threadpool(self._plan, tenant, (widget,), view, now)
        answer = await self._cached(tenant, view.identity(widget=widget.id), planned, now, lambda answers: answers[0])
        payload = orjson.loads(answer.body)
        if "error" in payload:
            raise QueryError(f"widget {widget.id!r}: {payload['error']}")
        return widget, payload, answer.how

    def _plan(self, tenant: str, widgets: tuple[Widget, ...], view: View,
              now: datetime) -> list[tuple[Widget, Planned]]:
        """Each widget's spec as viewed (dashboard range and filters applied), or why it cannot be shown so
        (e.g. minute buckets over 7 years, a KPI deleted since): that widget says so, the others still answer.
        A widget naming a KPI is answered with the KPI's current formula (its version is in the cache key);
        an analytics widget is the request the page sends to its own endpoint."""
        raws: list[SpecInput | None] = []
        for widget in widgets:
            if widget.analytics:
                raws.append(None)
                continue
            raw = with_overrides(spec_input(QueryModel.model_validate(widget.query)), view.range, view.filters)
            raw = replace(raw, tz=view.tz) if view.tz else raw
            if view.span:  # a fixed from-to period (scheduled reports) instead of the relative range
                raw = replace(raw, range=None, start=view.span[0], end=view.span[1])
            raws.append(raw)
        kpis = self._tenant_kpis(tenant, [r for r in raws if r is not None])
        planned: list[tuple[Widget, Planned]] = []
        for widget, raw in zip(widgets, raws, strict=True):
            if raw is None:
                planned.append((widget, analytics_request(widget, view.range)))
                continue
            try:
                planned.append((widget, build_spec(raw, now=now, kpis=kpis)))
            except QueryError as exc:
                planned.append((widget, str(exc)))
        return planned

    async def _run_widget(self, tenant: str, widget: Widget, spec: Planned, now: datetime,
                          compare: str | None = None) -> dict[str, Any]:
        if isinstance(spec, str):
            return {**widget.as_json(), "error": spec}
        if isinstance(spec, dict):
            return {**widget.as_json(), "request": spec}
        try:
            result = await run_in_threadpool(self._engine.run, tenant, spec, now)
            # the previous period where a chart shows it: numbers (their change) and series over time (overlay)
            wanted = compare and (widget.chart == "number" or spec.granularity is not None)
            extra = (await run_in_threadpool(compared, self._engine, tenant, spec, now, query_table)
                     if wanted else {})
        except QueryError as exc:
            return {**widget.as_json(), "error": str(exc)}
        return {**widget.as_json(), **query_answer(spec, result), **extra}

    async def _cached(self, tenant: str, identity: dict[str, Any], planned: list[tuple[Widget, Planned]],
                      now: datetime, shape: Callable[[list[dict[str, Any]]], Any],
                      compare: str | None = None) -> Answer:
        """Run the planned widgets through the cache (one entry per identity), all within the query timeout."""
        settings = self._settings
        specs = [s for _, s in planned if isinstance(s, QuerySpec)]
        formulas = sorted({(k.name, k.formula) for s in specs for k in s.kpis})
        identity = identity | ({"kpis": formulas} if formulas else {})  # an edited KPI is a new question
        live = any(s.end >= now - timedelta(minutes=1) for s in specs)  # ranges ending now: as /v1 queries
        # the span of every widget's range: a restatement of any hour in it drops this entry
        starts = [previous_period(s).start if compare else s.start for s in specs]
        span = EntryRange(tenant, min(starts), max(s.end for s in specs)) if specs else None

        async def compute() -> bytes:
            answers = await asyncio.wait_for(
                asyncio.gather(*(self._run_widget(tenant, w, s, now, compare) for w, s in planned)),
                timeout=settings.query_timeout_seconds)
            return orjson.dumps(shape(list(answers)))

        try:
            body, how = await self._cache.get_or_compute(cache_key(tenant, "dashboard", identity), compute=compute,
                                                      entry_range=span, **lifetime(settings, live))
        except TimeoutError as exc:  # the engine's QueryTimeout, or the wait above
            raise QueryTimeout(f"the dashboard's queries ran longer than {settings.query_timeout_seconds:g} s;"
                               " pick a shorter range or add filters") from exc
        return Answer(body, how)
