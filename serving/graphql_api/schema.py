"""The GraphQL schema: the catalogue, the named questions, ad-hoc queries, dashboards, alerts, product analytics
and custom KPIs (``serving.graphql_api.analytics``).

Each resolver asks the REST services (``serving.services``) the very question the matching REST endpoint
asks and reads the answer's JSON, so a field equals its endpoint's answer and shares its cache entry.
Nothing here takes a tenant: it is the caller's, from ``GraphContext``. Domain errors become GraphQL errors
carrying the HTTP status REST would answer (``serving.graphql_api.guards``).

``python -m serving.graphql_api.schema > docs/schema.graphql`` regenerates the exported schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import orjson
import strawberry
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from strawberry.scalars import JSON
from strawberry.types import Info

from common.hot_store import HotStoreError
from serving.alerts.store import AlertState as StoredState
from serving.dashboards.store import Dashboard as SavedDashboard
from serving.dashboards.store import DashboardError
from serving.graphql_api import analytics, reports
from serving.graphql_api.fields import FilterArg, FromArg, RangeArg, charged, context_of
from serving.query.engine import QueryTimeout
from serving.query.models import QueryModel, spec_input
from serving.query.spec import QueryError
from serving.routes.alerts import RuleOut, rule_out
from serving.routes.dashboards import DashboardModel
from serving.services import questions
from serving.services.live import MAX_MINUTES
from serving.services.queries import Answer, query_table

_ctx = context_of
_charged = charged


@strawberry.type(description="Where an answer came from and how long it took, as REST's answers say")
class Answered:
    tenant: str
    from_: str = strawberry.field(name="from")
    to: str
    granularity: str | None
    sources: list[str]
    read_from: str | None
    approximate: list[str] = strawberry.field(description="the metrics whose values are estimates (e.g. unique users "
                                                          "from the coarser tiers)")
    error_bounds: JSON = strawberry.field(description="per approximate metric, {relative_error, note}: the bound its "
                                                      "error stays within (null: none can be given) and why it is "
                                                      "approximate")
    truncated: bool
    took_ms: float
    cache: str = strawberry.field(description="hit, stale, miss, coalesced or bypass: REST's X-Cache")


def _answered(answer: Answer) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``Answered`` fields of a service answer, and its whole JSON body."""
    body = orjson.loads(answer.body)
    return {"tenant": body["tenant"], "from_": body["from"], "to": body["to"], "granularity": body["granularity"],
            "sources": body["sources"], "read_from": body["read_from"], "approximate": body["approximate"],
            "error_bounds": body.get("error_bounds", {}), "truncated": body["truncated"], "took_ms": body["took_ms"],
            "cache": answer.how}, body


@strawberry.type
class Metric:
    name: str
    description: str


@strawberry.type
class Catalog:
    metrics: list[Metric]
    dimensions: list[str]
    granularities: list[str]
    tiers: list[str]


@strawberry.type
class Point:
    bucket: str
    value: float | None


@strawberry.type
class Series:
    group: JSON = strawberry.field(description="the dimension values of this line, e.g. {\"country\": \"US\"}")
    points: list[Point]


@strawberry.type(description="GET /v1/timeseries")
class TimeSeries(Answered):
    metric: str
    group_by: list[str]
    series: list[Series]


@strawberry.type
class BreakdownRow:
    key: JSON = strawberry.field(description="the value of the `by` dimension")
    value: float | None


@strawberry.type(description="GET /v1/breakdown")
class Breakdown(Answered):
    metric: str
    by: str
    filters: JSON = strawberry.field(description="the filters applied, as [field, op, values]")
    rows: list[BreakdownRow]


@strawberry.type
class RankedRow:
    rank: int
    key: JSON
    value: float | None


@strawberry.type(description="GET /v1/topn")
class TopN(Answered):
    metric: str
    by: str
    n: int
    rows: list[RankedRow]


@strawberry.type(description="POST /v1/query")
class QueryAnswer(Answered):
    columns: list[str]
    rows: JSON


@strawberry.type
class Widget:
    id: str
    title: str
    chart: str
    query: JSON = strawberry.field(description="POST /v1/query's JSON (analytics widgets: their endpoint's request)")


@strawberry.type(description="A saved dashboard (GET /v1/dashboards/{id})")
class Dashboard:
    id: strawberry.ID
    name: str
    version: int
    builtin: bool
    created: str | None
    updated: str | None
    widgets: list[Widget]

    @strawberry.field(description="Every widget's answer: GET /v1/dashboards/{id}/data with the same range and filters")
    async def data(self, info: Info, range: RangeArg = None, filter: FilterArg = None) -> JSON:
        ctx = await _charged(info)
        view = await ctx.dashboards.view(ctx.tenant, str(self.id), range, filter or [])
        return orjson.loads((await ctx.dashboards.data(ctx.tenant, view)).body)


def _dashboard(saved: SavedDashboard) -> Dashboard:
    body = saved.as_json()
    return Dashboard(id=strawberry.ID(body["id"]), name=body["name"], version=body["version"],
                     builtin=body["builtin"], created=body["created"], updated=body["updated"],
                     widgets=[Widget(**w) for w in body["widgets"]])


@strawberry.type
class AlertState:
    state: str
    incident_id: str
    since: datetime | None
    evaluated_at: datetime | None
    value: float | None
    baseline: float | None
    pending_notifications: int


@strawberry.type(description="An alert rule and its state (GET /v1/alerts/{id})")
class Alert:
    id: strawberry.ID
    name: str
    metric: str
    filters: JSON
    window: str
    condition: JSON
    webhook_url: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
    state: AlertState


def _alert(out: RuleOut) -> Alert:
    body = out.model_dump(exclude={"tenant", "state", "id"})
    return Alert(**body, id=strawberry.ID(out.id), state=AlertState(**out.state.model_dump()))


@strawberry.input
class WidgetInput:
    id: str | None = None
    title: str = ""
    chart: str = strawberry.field(description="line, pie, bar, table, number; funnel, retention, paths, sessions")
    query: JSON = strawberry.field(description="POST /v1/query's JSON (analytics widgets: their endpoint's request)")


@strawberry.input
class DashboardInput:
    name: str
    widgets: list[WidgetInput] = strawberry.field(default_factory=list)


def _model(body: DashboardInput) -> DashboardModel:
    """The REST body model: the same checks and messages as POST/PUT /v1/dashboards."""
    try:
        return DashboardModel.model_validate({"name": body.name, "widgets": [
            {"id": w.id, "title": w.title, "chart": w.chart, "query": w.query} for w in body.widgets]})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise DashboardError(f"the dashboard cannot be saved as sent: {problems}") from None


def _if_match(version: int | None) -> str | None:
    return None if version is None else str(version)


@strawberry.type
class Query:
    @strawberry.field(description="The metrics, dimensions and granularities that can be queried (GET /v1/catalog)")
    def catalog(self) -> Catalog:
        found = questions.catalog()
        return Catalog(metrics=[Metric(name=k, description=v) for k, v in found["metrics"].items()],
                       dimensions=found["dimensions"], granularities=found["granularities"], tiers=found["tiers"])

    @strawberry.field(description="A metric over time, one line per group_by combination (GET /v1/timeseries)")
    async def timeseries(self, info: Info, metric: str, range: RangeArg = None,
                         from_: FromArg = None, to: datetime | None = None, granularity: str = "auto",
                         group_by: list[str] | None = None, filter: FilterArg = None,
                         tier: str = "auto", tz: str = "UTC", fill: str = "auto") -> TimeSeries:
        ctx = await _charged(info)
        raw, shape = questions.timeseries(metric, group_by or [], range, from_, to, granularity, filter or [], tier,
                                          tz=tz, fill=fill)
        found, body = _answered(await ctx.answers.answer(ctx.tenant, raw, shape))
        series = [Series(group=s["group"], points=[Point(bucket=b, value=v) for b, v in s["points"]])
                  for s in body["series"]]
        return TimeSeries(**found, metric=metric, group_by=body["group_by"], series=series)

    @strawberry.field(description="A metric split by one dimension; filters drill down (GET /v1/breakdown)")
    async def breakdown(self, info: Info, metric: str, by: str, range: RangeArg = None,
                        from_: FromArg = None, to: datetime | None = None, filter: FilterArg = None,
                        limit: int = 100, tier: str = "auto") -> Breakdown:
        ctx = await _charged(info)
        raw, shape = questions.breakdown(metric, by, range, from_, to, filter or [], _bounded("limit", limit, 10_000),
                                         tier)
        found, body = _answered(await ctx.answers.answer(ctx.tenant, raw, shape))
        return Breakdown(**found, metric=metric, by=by, filters=body["filters"],
                         rows=[BreakdownRow(key=r[by], value=r["value"]) for r in body["rows"]])

    @strawberry.field(description="The N largest values of a dimension by a metric (GET /v1/topn)")
    async def topn(self, info: Info, metric: str, by: str, n: int = 10, range: RangeArg = None,
                   from_: FromArg = None, to: datetime | None = None, filter: FilterArg = None,
                   tier: str = "auto") -> TopN:
        ctx = await _charged(info)
        raw, shape = questions.topn(metric, by, _bounded("n", n, 1000), range, from_, to, filter or [], tier)
        found, body = _answered(await ctx.answers.answer(ctx.tenant, raw, shape))
        return TopN(**found, metric=metric, by=by, n=n,
                    rows=[RankedRow(rank=r["rank"], key=r[by], value=r["value"]) for r in body["rows"]])

    @strawberry.field(description="An ad-hoc query from the JSON spec of POST /v1/query")
    async def query(self, info: Info, spec: JSON) -> QueryAnswer:
        ctx = await _charged(info)
        try:
            model = QueryModel.model_validate(spec)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise QueryError(f"the query spec is invalid: {problems}") from None
        found, body = _answered(await ctx.answers.answer(ctx.tenant, spec_input(model), query_table))
        return QueryAnswer(**found, columns=body["columns"], rows=body["rows"])

    @strawberry.field(description="The tenant's dashboards, the built-in overview first")
    async def dashboards(self, info: Info) -> list[Dashboard]:
        ctx = await _charged(info)
        return [_dashboard(d) for d in await ctx.dashboards.list(ctx.tenant)]

    @strawberry.field(description="One dashboard (an unknown id is an error with status 404)")
    async def dashboard(self, info: Info, id: strawberry.ID) -> Dashboard:
        ctx = await _charged(info)
        return _dashboard(await ctx.dashboards.get(ctx.tenant, str(id)))

    funnel: analytics.Funnel = strawberry.field(
        resolver=analytics.funnel, description="A conversion funnel: count, conversion, drop-off and time per step "
                                               "(POST /v1/funnels; default range 7d)")
    funnel_dropoff: analytics.FunnelDropoff = strawberry.field(
        resolver=analytics.funnel_dropoff, description="The users who reached `step` of a funnel and went no further "
                                                       "(POST /v1/funnels/dropoff)")
    retention: analytics.Analysis = strawberry.field(
        resolver=analytics.retention, description="A retention grid, cohorts × periods (POST /v1/retention; "
                                                  "default range 90d)")
    paths: analytics.Analysis = strawberry.field(
        resolver=analytics.paths, description="The most frequent next or previous events within sessions "
                                              "(POST /v1/paths; default range 7d)")
    sessions: analytics.Analysis = strawberry.field(
        resolver=analytics.sessions, description="Session metrics, optionally by entry_page or exit_page "
                                                 "(GET /v1/sessions; default range 7d)")
    kpis: list[analytics.Kpi] = strawberry.field(resolver=analytics.kpis, description="The tenant's custom KPIs "
                                                                                       "(GET /v1/kpis)")
    kpi: analytics.Kpi = strawberry.field(resolver=analytics.kpi, description="One KPI (an unknown name is an error "
                                                                              "with status 404)")

    report_schedules: list[reports.ReportSchedule] = strawberry.field(
        resolver=reports.report_schedules, description="The tenant's report schedules (GET /v1/reports/schedules)")
    report_schedule: reports.ReportSchedule = strawberry.field(
        resolver=reports.report_schedule, description="One report schedule (an unknown id is an error with status "
                                                      "404)")

    @strawberry.field(description="The tenant's alert rules with their current state")
    async def alerts(self, info: Info) -> list[Alert]:
        ctx = await _charged(info)
        store = ctx.alerts

        def read() -> list[Alert]:
            states = store.states(ctx.tenant)
            return [_alert(rule_out(r, states.get((ctx.tenant, r.id)) or StoredState(ctx.tenant, r.id)))
                    for r in store.rules(ctx.tenant)]

        return await run_in_threadpool(read)

    @strawberry.field(description="One alert rule, null if the tenant has none by that id")
    async def alert(self, info: Info, id: strawberry.ID) -> Alert | None:
        ctx = await _charged(info)
        store = ctx.alerts

        def read() -> Alert | None:
            rule = store.rule(ctx.tenant, str(id))
            return None if rule is None else _alert(rule_out(rule, store.state(ctx.tenant, rule.id)))

        return await run_in_threadpool(read)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Save a new dashboard (POST /v1/dashboards)")
    async def create_dashboard(self, info: Info, dashboard: DashboardInput) -> Dashboard:
        ctx = await _charged(info)
        model = _model(dashboard)
        return _dashboard(await ctx.dashboards.create(ctx.tenant, model.name, model.drafts()))

    @strawberry.mutation(description="Replace a dashboard (PUT /v1/dashboards/{id}); `ifVersion` refuses to "
                                     "overwrite a change you have not seen")
    async def replace_dashboard(self, info: Info, id: strawberry.ID, dashboard: DashboardInput,
                                if_version: int | None = None) -> Dashboard:
        ctx = await _charged(info)
        model = _model(dashboard)
        return _dashboard(await ctx.dashboards.replace(ctx.tenant, str(id), model.name, model.drafts(),
                                                       _if_match(if_version)))

    @strawberry.mutation(description="Delete a dashboard (DELETE /v1/dashboards/{id}); true once deleted")
    async def delete_dashboard(self, info: Info, id: strawberry.ID,
                               if_version: int | None = None) -> bool:
        ctx = await _charged(info)
        await ctx.dashboards.delete(ctx.tenant, str(id), _if_match(if_version))
        return True


    create_kpi: analytics.Kpi = strawberry.mutation(resolver=analytics.create_kpi,
                                                    description="Save a new KPI (POST /v1/kpis; 409 if the name is "
                                                                "taken)")
    replace_kpi: analytics.Kpi = strawberry.mutation(resolver=analytics.replace_kpi,
                                                     description="Change a KPI's formula (PUT /v1/kpis/{name})")
    delete_kpi: bool = strawberry.mutation(resolver=analytics.delete_kpi,
                                           description="Delete a KPI (DELETE /v1/kpis/{name}); true once deleted")
    create_report_schedule: reports.ReportSchedule = strawberry.mutation(
        resolver=reports.create_report_schedule,
        description="Schedule a dashboard's report, daily or weekly at `at` in `tz`, to `email` and/or `webhook` "
                    "(POST /v1/reports/schedules)")
    delete_report_schedule: bool = strawberry.mutation(
        resolver=reports.delete_report_schedule,
        description="Delete a report schedule (DELETE /v1/reports/schedules/{id}); true once deleted")


def _bounded(name: str, value: int, most: int) -> int:
    if not 1 <= value <= most:
        raise QueryError(f"`{name}` must be between 1 and {most}, got {value}")
    return value


@strawberry.type
class Subscription:
    @strawberry.subscription(description="What GET /v1/live sends: a metric's newest minutes, every live interval "
                                         "(one series per groupBy combination). Counts against the key's live "
                                         "stream cap; when the key is revoked the socket closes (4401).")
    async def live(self, info: Info, metric: str, minutes: int = 15, group_by: list[str] | None = None,
                   filter: FilterArg = None) -> AsyncGenerator[JSON, None]:
        ctx = await _charged(info)
        _bounded("minutes", minutes, MAX_MINUTES)
        question = await ctx.feed.question(ctx.tenant, metric, minutes, group_by or [], filter or [])
        with ctx.streams.hold(ctx.caller.key_id if ctx.caller is not None else "open"):
            while True:
                try:
                    yield orjson.loads(await ctx.feed.snapshot(ctx.tenant, question))
                except (QueryTimeout, TimeoutError, HotStoreError) as exc:  # as SSE: say so, go on
                    yield {"error": str(exc) or type(exc).__name__}
                await asyncio.sleep(ctx.live_interval_seconds)
                if ctx.key is not None and ctx.auth is not None and not await ctx.auth.still_valid(ctx.key):
                    await info.context["request"].close(code=4401, reason="the API key was revoked")
                    return


SCHEMA = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)

if __name__ == "__main__":
    print(SCHEMA.as_str())
