"""GraphQL's product analytics and custom KPIs: funnels (and who dropped off), retention, paths, sessions,
and the tenant's KPIs with their values.

Each field builds REST's request model from its arguments (the same checks and messages) and asks the
object REST asks (``AnalyticsQuestions`` over ``serving.services.analytics``, ``KpiService``), so a field's
``answer`` is the JSON of its endpoint, from the same cache entry. A few fields are typed for pages that
want only them (a funnel's steps, the dropped-off users); ``answer`` carries everything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from serving.analytics.kpis import SavedKpi
from serving.graphql_api.fields import FilterArg, FromArg, charged, validated
from serving.routes.analytics import FunnelModel, PathsModel, RangeModel, RetentionModel
from serving.routes.kpis import KpiModel, KpiUpdate
from serving.services.queries import Answer


@strawberry.type(description="What the product-analytics endpoints answer: the range, sources and the whole "
                             "JSON body of the endpoint (`answer`)")
class Analysis:
    tenant: str
    from_: str = strawberry.field(name="from")
    to: str
    sources: list[str]
    took_ms: float
    cache: str = strawberry.field(description="hit, stale, miss, coalesced or bypass: REST's X-Cache")
    answer: JSON = strawberry.field(description="the endpoint's JSON answer, every field of it")


@strawberry.type
class FunnelStep:
    step: int
    event: str
    count: int
    conversion_from_previous: float | None
    conversion_from_first: float | None
    drop_off: int
    drop_off_rate: float | None
    time_to_convert_mean: float | None
    time_to_convert_median: float | None


@strawberry.type(description="POST /v1/funnels")
class Funnel(Analysis):
    steps: list[FunnelStep] = strawberry.field(description="the whole funnel (each breakdown value's steps are "
                                                          "in `answer.breakdown`)")


@strawberry.type(description="POST /v1/funnels/dropoff")
class FunnelDropoff(Analysis):
    step: int
    users: list[str] = strawberry.field(description="who reached `step` and went no further, sorted")


STEP_FIELDS = [f.name for f in FunnelStep.__strawberry_definition__.fields]


def _analysis(answer: Answer) -> tuple[dict[str, Any], dict[str, Any]]:
    body = orjson.loads(answer.body)
    return {"tenant": body["tenant"], "from_": body["from"], "to": body["to"], "sources": body["sources"],
            "took_ms": body["took_ms"], "cache": answer.how, "answer": body}, body


@strawberry.input
class StepFilterInput:
    field: str = strawberry.field(description="country, device or page")
    op: str = "="
    value: str | None = None
    values: list[str] | None = None


@strawberry.input
class StepInput:
    event: str
    filters: list[StepFilterInput] = strawberry.field(default_factory=list)


@strawberry.input
class ExclusionInput:
    event: str
    filters: list[StepFilterInput] = strawberry.field(default_factory=list)
    from_step: int = 1
    to_step: int | None = None


def _plain(value: Any) -> Any:
    """Strawberry inputs as the plain JSON REST's models read."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "__strawberry_definition__"):
        return {k: _plain(v) for k, v in vars(value).items() if v is not None}
    return value


def _range(range: str | None, from_: datetime | None, to: datetime | None, tier: str) -> dict[str, Any]:
    return {"range": range, "from": from_, "to": to, "tier": tier}


def _funnel_model(steps: list[StepInput], window: str, unit: str, mode: str, exclusions: list[ExclusionInput] | None,
                  breakdown: str | None, breakdown_limit: int, span: dict[str, Any]) -> FunnelModel:
    return validated(FunnelModel, {"steps": _plain(steps), "window": window, "unit": unit, "mode": mode,
                                   "exclusions": _plain(exclusions or []), "breakdown": breakdown,
                                   "breakdown_limit": breakdown_limit, **span}, "funnel")


async def funnel(info: Info, steps: list[StepInput], range: str | None = None, from_: FromArg = None,
                 to: datetime | None = None, window: str = "14d", unit: str = "users", mode: str = "ordered",
                 exclusions: list[ExclusionInput] | None = None, breakdown: str | None = None,
                 breakdown_limit: int = 10, tier: str = "auto") -> Funnel:
    ctx = await charged(info)
    model = _funnel_model(steps, window, unit, mode, exclusions, breakdown, breakdown_limit,
                          _range(range, from_, to, tier))
    found, body = _analysis(await ctx.analytics.funnel(ctx.tenant, model))
    return Funnel(**found, steps=[FunnelStep(**{k: s[k] for k in STEP_FIELDS}) for s in body["steps"]])


async def funnel_dropoff(info: Info, steps: list[StepInput], step: int, range: str | None = None,
                         from_: FromArg = None, to: datetime | None = None, window: str = "14d",
                         unit: str = "users", mode: str = "ordered", exclusions: list[ExclusionInput] | None = None,
                         tier: str = "auto") -> FunnelDropoff:
    ctx = await charged(info)
    model = _funnel_model(steps, window, unit, mode, exclusions, None, 10, _range(range, from_, to, tier))
    found, body = _analysis(await ctx.analytics.dropoff(ctx.tenant, model, step))
    return FunnelDropoff(**found, step=body["step"], users=body["users"])


async def retention(info: Info, start_event: str, return_event: str | None = None, period: str = "week",
                    periods: int = 8, mode: str = "on", breakdown: str | None = None, range: str | None = None,
                    from_: FromArg = None, to: datetime | None = None, tier: str = "auto") -> Analysis:
    ctx = await charged(info)
    model = validated(RetentionModel, {"start_event": start_event, "return_event": return_event, "period": period,
                                       "periods": periods, "mode": mode, "breakdown": breakdown,
                                       **_range(range, from_, to, tier)}, "retention question")
    return Analysis(**_analysis(await ctx.analytics.retention(ctx.tenant, model))[0])


async def paths(info: Info, start_event: str | None = None, end_event: str | None = None, steps: int = 5,
                edge_limit: int = 50, range: str | None = None, from_: FromArg = None, to: datetime | None = None,
                tier: str = "auto") -> Analysis:
    ctx = await charged(info)
    model = validated(PathsModel, {"start_event": start_event, "end_event": end_event, "steps": steps,
                                   "edge_limit": edge_limit, **_range(range, from_, to, tier)}, "paths question")
    return Analysis(**_analysis(await ctx.analytics.paths(ctx.tenant, model))[0])


async def sessions(info: Info, range: str | None = None, from_: FromArg = None, to: datetime | None = None,
                   by: str | None = None, non_interactive: list[str] | None = None, tier: str = "auto") -> Analysis:
    ctx = await charged(info)
    model = validated(RangeModel, _range(range, from_, to, tier), "range")
    return Analysis(**_analysis(await ctx.analytics.sessions(ctx.tenant, model, by, non_interactive or []))[0])


@strawberry.type(description="GET /v1/kpis/{name}/data")
class KpiData(Analysis):
    granularity: str | None
    columns: list[str]
    rows: JSON


@strawberry.type(description="A custom KPI (GET /v1/kpis/{name})")
class Kpi:
    name: str
    formula: str
    metrics: list[str] = strawberry.field(description="the catalogue metrics the formula reads")
    description: str
    version: int
    updated: str

    @strawberry.field(description="The KPI over time (granularity) or by a dimension (by): "
                                  "GET /v1/kpis/{name}/data with the same arguments")
    async def data(self, info: Info, range: str | None = None, from_: FromArg = None, to: datetime | None = None,
                   granularity: str | None = None, by: str | None = None, filter: FilterArg = None,
                   tier: str = "auto") -> KpiData:
        ctx = await charged(info)
        answer = await ctx.kpis.data(ctx.tenant, self.name, range, from_, to, granularity, by, filter or [], tier)
        found, body = _analysis(answer)
        return KpiData(**found, granularity=body["granularity"], columns=body["columns"], rows=body["rows"])


def _kpi(saved: SavedKpi) -> Kpi:
    return Kpi(**saved.as_json())


async def kpis(info: Info) -> list[Kpi]:
    ctx = await charged(info)
    return [_kpi(k) for k in await ctx.kpis.list(ctx.tenant)]


async def kpi(info: Info, name: str) -> Kpi:
    ctx = await charged(info)
    return _kpi(await ctx.kpis.get(ctx.tenant, name))


async def create_kpi(info: Info, name: str, formula: str, description: str = "") -> Kpi:
    ctx = await charged(info)
    body = validated(KpiModel, {"name": name, "formula": formula, "description": description}, "KPI")
    return _kpi(await ctx.kpis.create(ctx.tenant, body.name, body.formula, body.description))


async def replace_kpi(info: Info, name: str, formula: str, description: str = "") -> Kpi:
    ctx = await charged(info)
    body = validated(KpiUpdate, {"formula": formula, "description": description}, "KPI")
    return _kpi(await ctx.kpis.replace(ctx.tenant, name, body.formula, body.description))


async def delete_kpi(info: Info, name: str) -> bool:
    ctx = await charged(info)
    await ctx.kpis.delete(ctx.tenant, name)
    return True
