"""Saved dashboards: a named, per-tenant list of widgets, each a query spec and a chart type.

A widget's query is exactly the JSON of ``POST /v1/query`` (validated with ``build_spec`` when it is
saved), so a widget answers what that endpoint answers, and a dashboard is nothing but stored questions.
Product-analytics widgets (funnel, retention, paths, sessions) keep the request of their own endpoint
instead (``ANALYTICS_ENDPOINTS``), checked by that endpoint's rules when saved.
Dashboards are control-plane data shared by every API replica and the CLI, so they live in the hot store
(``sql/clickhouse/009_dashboards.sql``): a ReplacingMergeTree where every save inserts the next version of
the row and a delete inserts a tombstone, read with FINAL. The version is what clients see: it names the
cached answers of a dashboard (a saved change can never be answered from an older definition's cache) and
lets an editor refuse to overwrite a change it has not seen (``If-Match``).

Every tenant also has the built-in, read-only ``overview`` dashboard: what the web dashboard opens on.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from common.events import format_optional_ts
from common.hot_store import HotStore
from common.sql_files import sql_sections
from serving.query.spec import QuerySpec, SpecInput

CHARTS = ("line", "pie", "bar", "table", "number")
# analytics widget → the endpoint whose request its query is (its answer is that endpoint's answer)
ANALYTICS_ENDPOINTS = {"funnel": ("POST", "/v1/funnels"), "retention": ("POST", "/v1/retention"),
                       "paths": ("POST", "/v1/paths"), "sessions": ("GET", "/v1/sessions")}
ANALYTICS_CHARTS = tuple(ANALYTICS_ENDPOINTS)
ALL_CHARTS = (*CHARTS, *ANALYTICS_CHARTS)
MAX_WIDGETS = 50
BUILTIN_ID = "overview"
WIDGET_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class DashboardError(ValueError):
    """A dashboard or widget that cannot be saved as sent; the message says what to change."""


class DashboardNotFound(LookupError):
    pass


class DashboardConflict(RuntimeError):
    """The dashboard cannot be changed: it is the read-only built-in one."""


class VersionMismatch(DashboardConflict):
    """The dashboard changed since the client read it (``If-Match`` named an older version)."""


@dataclass(frozen=True)
class Widget:
    id: str
    title: str
    chart: str
    query: dict[str, Any]  # the JSON of POST /v1/query (an analytics widget: its endpoint's request)

    @property
    def analytics(self) -> bool:
        return self.chart in ANALYTICS_ENDPOINTS

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "chart": self.chart, "query": self.query}


@dataclass(frozen=True)
class Dashboard:
    id: str
    name: str
    widgets: tuple[Widget, ...]
    version: int
    created: datetime | None = None
    updated: datetime | None = None
    builtin: bool = False

    def widget(self, widget_id: str) -> Widget:
        for widget in self.widgets:
            if widget.id == widget_id:
                return widget
        known = ", ".join(w.id for w in self.widgets) or "none"
        raise DashboardNotFound(f"dashboard {self.id!r} has no widget {widget_id!r}; its widgets: {known}")

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "version": self.version, "builtin": self.builtin,
                "created": format_optional_ts(self.created, "auto"),
                "updated": format_optional_ts(self.updated, "auto"),
                "widgets": [w.as_json() for w in self.widgets]}


def check_widgets(widgets: Sequence[Widget], specs: Sequence[QuerySpec | None]) -> tuple[Widget, ...]:
    """Give widgets without an id one (``w1``, ``w2`` …), refuse duplicate ids and charts that cannot show
    their query: a line needs time buckets, a pie one dimension and one metric, a number no grouping.
    An analytics widget has no spec (None): its request was checked by its endpoint's rules."""
    if len(widgets) > MAX_WIDGETS:
        raise DashboardError(f"a dashboard holds at most {MAX_WIDGETS} widgets, got {len(widgets)}")
    taken = {w.id for w in widgets if w.id}
    out: list[Widget] = []
    counter = 0
    for widget, spec in zip(widgets, specs, strict=True):
        wid = widget.id
        if not wid:
            counter += 1
            while f"w{counter}" in taken:
                counter += 1
            wid = f"w{counter}"
            taken.add(wid)
        elif not WIDGET_ID.match(wid):
            raise DashboardError(f"widget id {wid!r} must be 1-64 letters, digits, '_' or '-'")
        if any(o.id == wid for o in out):
            raise DashboardError(f"widget id {wid!r} is used twice; widget ids must be unique in a dashboard")
        _check_chart(wid, widget.chart, spec)
        out.append(replace(widget, id=wid, title=widget.title or wid))
    return tuple(out)


def _check_chart(wid: str, chart: str, spec: QuerySpec | None) -> None:
    if chart not in ALL_CHARTS:
        raise DashboardError(f"widget {wid!r}: unknown chart {chart!r}; known: {', '.join(ALL_CHARTS)}")
    if chart in ANALYTICS_CHARTS or spec is None:
        if (chart in ANALYTICS_CHARTS) != (spec is None):
            raise DashboardError(f"widget {wid!r}: a {chart} widget's query is the request of "
                                 f"{' '.join(ANALYTICS_ENDPOINTS.get(chart, ('POST', '/v1/query')))}")
        return
    if chart == "line" and not spec.granularity:
        raise DashboardError(f"widget {wid!r}: a line chart needs a granularity (minute, hour, day or auto)")
    if chart == "pie" and (len(spec.dimensions) != 1 or len(spec.metrics) != 1 or spec.granularity):
        raise DashboardError(f"widget {wid!r}: a pie shows one metric split by one dimension, without granularity")
    if chart == "bar" and not spec.granularity and len(spec.dimensions) != 1:
        raise DashboardError(f"widget {wid!r}: a bar chart needs a granularity or exactly one dimension")
    if chart == "number" and (spec.dimensions or spec.granularity):
        raise DashboardError(f"widget {wid!r}: a number shows totals: no dimensions, no granularity")


def with_overrides(raw: SpecInput, range_: str | None, filters: Sequence[dict[str, Any]]) -> SpecInput:
    """A widget's spec as its dashboard is viewed: the dashboard's range replaces the widget's own, the
    dashboard's filters (drill-down) are added to the widget's."""
    if range_:
        raw = replace(raw, range=range_, start=None, end=None)
    return replace(raw, filters=[*raw.filters, *filters]) if filters else raw


def _top(metric: str, by: str, limit: int) -> dict[str, Any]:
    return {"metrics": [metric], "dimensions": [by], "order_by": [{"field": metric, "direction": "desc"}],
            "limit": limit, "range": "24h"}


OVERVIEW = Dashboard(
    id=BUILTIN_ID,
    name="Overview",
    version=0,
    builtin=True,
    widgets=(
        Widget("totals", "Totals", "number", {"metrics": ["events", "unique_users", "revenue"], "range": "24h"}),
        Widget("events_over_time", "Events over time", "line",
               {"metrics": ["events"], "granularity": "auto", "range": "24h", "fill": "auto"}),
        Widget("by_country", "Events by country", "pie", _top("events", "country", 20)),
        Widget("by_device", "Events by device", "pie", _top("events", "device", 10)),
        Widget("top_pages", "Top pages", "table",
               {**_top("events", "page", 10), "metrics": ["events", "unique_users"]}),
    ),
)


class DashboardStore:
    """CRUD of a tenant's dashboards in the hot store (blocking calls: run them off the event loop)."""

    def __init__(self, store: HotStore, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._clock = lambda: _to_ms(clock())  # what the table keeps (DateTime64(3)), so answers equal reads
        self._sql = sql_sections("clickhouse/queries/dashboards.sql")

    def list(self, tenant: str) -> list[Dashboard]:
        rows = self._store.query_arrow(self._sql["list"], {"tenant": tenant}).to_pylist()
        return [OVERVIEW, *(self._row(r) for r in rows)]

    def get(self, tenant: str, dashboard_id: str) -> Dashboard:
        if dashboard_id == BUILTIN_ID:
            return OVERVIEW
        rows = self._store.query_arrow(self._sql["get"], {"tenant": tenant, "id": dashboard_id}).to_pylist()
        if not rows or rows[0]["deleted"]:
            raise DashboardNotFound(f"no dashboard {dashboard_id!r} for this tenant; GET /v1/dashboards lists them")
        return self._row(rows[0])

    def create(self, tenant: str, name: str, widgets: Sequence[Widget]) -> Dashboard:
        now = self._clock()
        dashboard = Dashboard(f"d-{uuid.uuid4().hex[:12]}", name, tuple(widgets), 1, now, now)
        self._put(tenant, dashboard, deleted=False)
        return dashboard

    def replace(self, tenant: str, dashboard_id: str, name: str, widgets: Sequence[Widget],
                expected_version: int | None = None) -> Dashboard:
        current = self._current(tenant, dashboard_id, expected_version)
        dashboard = Dashboard(dashboard_id, name, tuple(widgets), current.version + 1, current.created, self._clock())
        self._put(tenant, dashboard, deleted=False)
        return dashboard

    def delete(self, tenant: str, dashboard_id: str, expected_version: int | None = None) -> None:
        current = self._current(tenant, dashboard_id, expected_version)
        self._put(tenant, replace(current, version=current.version + 1, updated=self._clock()), deleted=True)

    def _current(self, tenant: str, dashboard_id: str, expected_version: int | None) -> Dashboard:
        if dashboard_id == BUILTIN_ID:
            raise DashboardConflict(f"{BUILTIN_ID!r} is built in and read-only; POST /v1/dashboards to save your own "
                                    "(its widgets are a good start)")
        current = self.get(tenant, dashboard_id)
        if expected_version is not None and expected_version != current.version:
            raise VersionMismatch(f"dashboard {dashboard_id!r} is at version {current.version}, not "
                                    f"{expected_version}: GET it again and re-apply your change")
        return current

    def _put(self, tenant: str, dashboard: Dashboard, *, deleted: bool) -> None:
        self._store.command(self._sql["put"], {
            "tenant": tenant, "id": dashboard.id, "name": dashboard.name,
            "widgets": json.dumps([w.as_json() for w in dashboard.widgets], separators=(",", ":")),
            "version": dashboard.version, "deleted": int(deleted),
            "created": _naive_utc(dashboard.created), "updated": _naive_utc(dashboard.updated),
        })

    @staticmethod
    def _row(row: dict[str, Any]) -> Dashboard:
        widgets = tuple(Widget(w["id"], w["title"], w["chart"], w["query"]) for w in json.loads(row["widgets"]))
        return Dashboard(row["id"], row["name"], widgets, int(row["version"]), _aware(row["created"]),
                         _aware(row["updated"]))


def _to_ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _naive_utc(value: datetime | None) -> datetime:
    value = value or datetime.now(UTC)
    return value.astimezone(UTC).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
