"""Product analytics endpoints: funnels (and who dropped off), retention grids, paths and session metrics.

Routes parse the request into the engine's spec and shape the answer; ``serving.services.analytics`` decides
(cache, timeout, errors) and ``serving.errors`` maps what it raises to the status. Each answer is computed
by ``serving.analytics.engine`` on one engine (hot tier or lake, named in ``sources``), cached like the
dashboard queries (one entry per tenant and question), and available as CSV.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from common.events import format_ts
from serving.analytics import definitions as defs
from serving.analytics.engine import AnalyticsEngine
from serving.analytics.engine import Answer as EngineAnswer
from serving.context import Serving
from serving.observability import request_fields
from serving.query.csv_export import csv_filename, csv_requested, csv_response, stamp
from serving.query.spec import QueryError, parse_range
from serving.services.analytics import AnalyticsAnswers
from serving.services.queries import Answer
from storage_tiers.policy import load_policy

Table = tuple[list[str], list[list[Any]]]


class StepFilterModel(BaseModel):
    field: str = Field(description="country, device or page")
    op: str = Field("=", description="=, !=, in, not in")
    value: str | None = None
    values: list[str] | None = None


class StepModel(BaseModel):
    event: str = Field(description="the event name this step waits for", examples=["page_view"])
    filters: list[StepFilterModel] = Field(default_factory=list)


class ExclusionModel(StepModel):
    from_step: int = Field(1, description="a unit doing this event after this step (1-based) ...")
    to_step: int | None = Field(None, description="... and before this one (default: the last step) is left out")


class RangeModel(BaseModel):
    range: str | None = Field(None, description="7d, 30d, 1y … ending now; or from/to")
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None
    tier: str = Field("auto", description="auto (one engine that holds the whole scan), hot or lake")

    model_config = {"populate_by_name": True}


class FunnelModel(RangeModel):
    """A conversion funnel; units enter within the range and may convert up to one window after it."""

    steps: list[StepModel] = Field(min_length=2, max_length=10)
    window: str = Field("14d", description="conversion window from the step-1 event, end included (e.g. 1h, 7d)")
    unit: str = Field("users", description="users or sessions")
    mode: str = Field("ordered", description="ordered, strict or any")
    exclusions: list[ExclusionModel] = Field(default_factory=list)
    breakdown: str | None = Field(None, description="country, device or page, taken from the step-1 event")
    breakdown_limit: int = Field(10, ge=1, le=100, description="top N values; the rest are 'other'")


class RetentionModel(RangeModel):
    """Cohorts by the period of each user's first-ever start event; returns per period after it."""

    start_event: str
    return_event: str | None = Field(None, description="default: the start event")
    period: str = Field("week", description="day, week (Monday) or month")
    periods: int = Field(8, ge=1, le=60)
    mode: str = Field("on", description="on (returned in period n) or on_or_after (in n or later)")
    breakdown: str | None = Field(None, description="country, device or page of the user's first start event")


class PathsModel(RangeModel):
    """The most frequent next (after start_event) or previous (before end_event) events within sessions."""

    start_event: str | None = None
    end_event: str | None = None
    steps: int = Field(5, ge=1, le=5)
    edge_limit: int = Field(50, ge=1, le=50)


def _iso(moment: datetime) -> str:
    return format_ts(moment, "auto")


def _ms_floor(moment: datetime) -> datetime:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
LONGEST = timedelta(days=8 * 366)


def resolve_range(model: RangeModel, now: datetime, default: str) -> tuple[datetime, datetime]:
    """[start, end) of a request, to the millisecond (the events' precision), within 8 years ending by
    tomorrow at the latest (the engines widen it by up to a year of windows and periods)."""
    if model.from_ is not None or model.to is not None:
        if model.from_ is None:
            raise QueryError("'from' is required with 'to'")
        start, end = _ms_floor(model.from_), _ms_floor(model.to or now)
    else:
        span = parse_range(model.range or default)
        if span > LONGEST:
            raise QueryError("a range reaches back at most 8 years")
        start, end = _ms_floor(now - span), _ms_floor(now)
    if start < EARLIEST or end > now + timedelta(days=1) or end - start > LONGEST:
        raise QueryError("from/to must lie between 1970 and tomorrow and span at most 8 years")
    return start, end


def _range_identity(model: RangeModel, start: datetime, end: datetime) -> dict[str, Any]:
    if model.from_ is None and model.to is None:  # relative: the same question all along
        return {"range": model.range}
    return {"from": _iso(start), "to": _iso(end)}


def _steps(model_steps: list[StepModel]) -> list[dict[str, Any]]:
    return [s.model_dump(exclude_none=True) for s in model_steps]


def funnel_input(body: FunnelModel) -> dict[str, Any]:
    return {
        "steps": _steps(body.steps), "window": parse_range(body.window), "unit": body.unit, "mode": body.mode,
        "exclusions": [{**x.model_dump(exclude_none=True), "to_step": x.to_step or len(body.steps)}
                       for x in body.exclusions],
        "breakdown": body.breakdown, "breakdown_limit": body.breakdown_limit, "tier": body.tier,
    }


def funnel_table(payload: dict[str, Any]) -> Table:
    columns = ["step", "event", "count", "conversion_from_previous", "conversion_from_first", "drop_off",
               "drop_off_rate", "time_to_convert_mean", "time_to_convert_median"]
    if "breakdown" not in payload:
        return columns, [[s[c] for c in columns] for s in payload["steps"]]
    return ["breakdown_value", *columns], [[g["value"], *(s[c] for c in columns)]
                                           for g in payload["breakdown"] for s in g["steps"]]


def retention_table(payload: dict[str, Any]) -> Table:
    periods = len(payload["cohorts"][0]["counts"]) if payload["cohorts"] else 0
    lead = ["cohort", "breakdown_value"] if payload.get("breakdown") else ["cohort"]
    columns = [*lead, "size", *(f"period_{n}" for n in range(periods))]
    return columns, [[c["cohort"], *([c["value"]] if payload.get("breakdown") else []), c["size"], *c["counts"]]
                     for c in payload["cohorts"]]


def paths_table(payload: dict[str, Any]) -> Table:
    return ["step", "from", "to", "sessions"], [[e["step"], e["from"], e["to"], e["sessions"]]
                                                for e in payload["edges"]]


def sessions_table(payload: dict[str, Any]) -> Table:
    measures = ["sessions", "avg_session_duration", "pages_per_session", "bounce_rate"]
    if payload.get("by"):
        return [payload["by"], *measures], [[r[payload["by"]], *(r[m] for m in measures)] for r in payload["rows"]]
    return measures, [[payload["totals"][m] for m in measures]]


def respond(answer: Answer, export: tuple[str, Callable[[dict[str, Any]], Table]] | None) -> Response:
    """The cached answer as JSON, or as the CSV of ``export`` (made from the same answer, no second question)."""
    if export is None:
        return Response(answer.body, media_type="application/json", headers={"X-Cache": answer.how})
    payload = orjson.loads(answer.body)
    columns, rows = export[1](payload)
    return csv_response(columns, rows, csv_filename(export[0], stamp(payload["to"])), {"X-Cache": answer.how})


class AnalyticsQuestions:
    """The four questions as their answers: each request's spec, cache identity and shape, asked of
    ``AnalyticsAnswers``. REST and GraphQL both ask here, so a GraphQL field shares its endpoint's answer and
    cache entry."""

    def __init__(self, serving: Serving) -> None:
        settings = serving.settings
        hot_horizon = load_policy(settings).horizon("events", "hot") or timedelta(days=7)
        self.engine = AnalyticsEngine(serving.store, settings, hot_horizon=hot_horizon,
                                      timeout_seconds=settings.query_timeout_seconds)
        self.answers = AnalyticsAnswers(self.engine, serving.cache, settings)

    def _funnel_parts(self, body: FunnelModel, now: datetime) -> tuple[defs.FunnelSpec, dict[str, Any]]:
        start, end = resolve_range(body, now, "7d")
        raw = funnel_input(body)
        spec = defs.funnel_spec(raw, start, end)
        identity = {**raw, "window": spec.window.total_seconds(), **_range_identity(body, start, end)}
        return spec, identity

    @staticmethod
    def _funnel_shape(spec: defs.FunnelSpec) -> Callable[[EngineAnswer], dict[str, Any]]:
        def shape(result: EngineAnswer) -> dict[str, Any]:
            return {"from": _iso(spec.start), "to": _iso(spec.end), "conversion_until": _iso(spec.end + spec.window),
                    "note": "units entered within [from, to); their conversions are counted up to one window "
                            "after to (conversion_until)",
                    "unit": spec.unit, "mode": spec.mode, "window_seconds": spec.window.total_seconds(),
                    "breakdown_by": spec.breakdown, **result.body}
        return shape

    async def funnel(self, tenant: str, body: FunnelModel) -> Answer:
        now = datetime.now(UTC)
        spec, identity = self._funnel_parts(body, now)
        return await self.answers.answer(tenant, "funnel", identity, (spec.start, spec.end + spec.window), now,
                                         lambda: self.engine.funnel(tenant, spec, now, units=False),
                                         self._funnel_shape(spec))

    async def dropoff(self, tenant: str, body: FunnelModel, step: int) -> Answer:
        now = datetime.now(UTC)
        spec, identity = self._funnel_parts(body, now)
        if not 1 <= step < len(spec.steps):
            raise QueryError(f"step must be 1 to {len(spec.steps) - 1}")
        funnel_shape = self._funnel_shape(spec)

        def shape(result: EngineAnswer) -> dict[str, Any]:
            users = sorted({c.user_id for c in result.conversions if c.level == step})
            return {**{k: v for k, v in funnel_shape(result).items() if k not in ("steps", "breakdown")},
                    "step": step, "users": users}

        return await self.answers.answer(tenant, "funnel-dropoff", {**identity, "step": step},
                                         (spec.start, spec.end + spec.window), now,
                                         lambda: self.engine.funnel(tenant, spec, now), shape)

    async def retention(self, tenant: str, body: RetentionModel) -> Answer:
        now = datetime.now(UTC)
        start, end = resolve_range(body, now, "90d")
        raw = body.model_dump(exclude={"range", "from_", "to"})
        spec = defs.retention_spec(raw, start, end)

        def shape(result: EngineAnswer) -> dict[str, Any]:
            return {"from": _iso(start), "to": _iso(end), "start_event": spec.start_event,
                    "return_event": spec.return_event, "period": spec.period, "periods": spec.periods,
                    "mode": spec.mode, "breakdown": spec.breakdown, **result.body}

        return await self.answers.answer(tenant, "retention", {**raw, **_range_identity(body, start, end)},
                                         (start, now), now, lambda: self.engine.retention(tenant, spec, now), shape)

    async def paths(self, tenant: str, body: PathsModel) -> Answer:
        now = datetime.now(UTC)
        start, end = resolve_range(body, now, "7d")
        raw = body.model_dump(exclude={"range", "from_", "to"})
        spec = defs.paths_spec(raw, start, end)

        def shape(result: EngineAnswer) -> dict[str, Any]:
            return {"from": _iso(start), "to": _iso(end), "steps": spec.steps, **result.body}

        return await self.answers.answer(tenant, "paths", {**raw, **_range_identity(body, start, end)},
                                         (start - defs.SESSION_CUT, end + defs.SESSION_CUT), now,
                                         lambda: self.engine.paths(tenant, spec, now), shape)

    async def sessions(self, tenant: str, model: RangeModel, by: str | None, non_interactive: list[str]) -> Answer:
        now = datetime.now(UTC)
        start, end = resolve_range(model, now, "7d")
        raw = {"by": by, "non_interactive": non_interactive, "tier": model.tier}
        spec = defs.sessions_spec(raw, start, end)

        def shape(result: EngineAnswer) -> dict[str, Any]:
            return {"from": _iso(start), "to": _iso(end), "by": by, **result.body}

        return await self.answers.answer(tenant, "sessions", {**raw, **_range_identity(model, start, end)},
                                         (start - defs.SESSION_CUT, end + defs.SESSION_CUT), now,
                                         lambda: self.engine.sessions(tenant, spec, now), shape)


def analytics_router(serving: Serving) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["product analytics"])
    tenant_of = serving.tenant_dependency
    questions = AnalyticsQuestions(serving)

    def answered(tenant: str) -> AnalyticsQuestions:
        request_fields()["tenant"] = tenant
        return questions

    @router.post("/funnels", summary="A conversion funnel: count, conversion, drop-off and time per step",
                 description="2–10 steps; each unit counts once, at the furthest step of its best attempt. "
                             "See docs/product-analytics.md.")
    async def funnels(tenant: str = Depends(tenant_of), body: FunnelModel = Body(...),
                      as_csv: bool = Depends(csv_requested)) -> Response:
        return respond(await answered(tenant).funnel(tenant, body), ("funnel", funnel_table) if as_csv else None)

    @router.post("/funnels/dropoff", summary="The users who reached step k of a funnel and went no further",
                 description="JSON `{users: [...]}` or CSV (`format=csv`) of user ids, sorted.")
    async def dropoff(tenant: str = Depends(tenant_of), body: FunnelModel = Body(...),
                      step: int = Query(..., ge=1, le=9, description="the last step they reached"),
                      as_csv: bool = Depends(csv_requested)) -> Response:
        export = (f"funnel-dropoff-step{step}", lambda p: (["user_id"], [[u] for u in p["users"]])) if as_csv else None
        return respond(await answered(tenant).dropoff(tenant, body, step), export)

    @router.post("/retention", summary="A retention grid: cohorts × periods with counts and percentages")
    async def retention(tenant: str = Depends(tenant_of), body: RetentionModel = Body(...),
                        as_csv: bool = Depends(csv_requested)) -> Response:
        return respond(await answered(tenant).retention(tenant, body),
                       ("retention", retention_table) if as_csv else None)

    @router.post("/paths", summary="User paths: the most frequent next or previous events within sessions")
    async def paths(tenant: str = Depends(tenant_of), body: PathsModel = Body(...),
                    as_csv: bool = Depends(csv_requested)) -> Response:
        return respond(await answered(tenant).paths(tenant, body), ("paths", paths_table) if as_csv else None)

    @router.get("/sessions", summary="Session metrics: sessions, duration, pages per session, bounce rate",
                description="Sessions whose first event lies in the range; `by=entry_page|exit_page` splits them.")
    async def sessions(
        tenant: str = Depends(tenant_of),
        range_: str | None = Query(None, alias="range", description="7d, 30d … ending now (default 7d)"),
        from_: datetime | None = Query(None, alias="from"),
        to: datetime | None = None,
        by: str | None = Query(None, description="entry_page or exit_page"),
        non_interactive: list[str] = Query([], description="event names that do not count as interaction"),
        tier: str = "auto",
        as_csv: bool = Depends(csv_requested),
    ) -> Response:
        model = RangeModel(range=range_, from_=from_, to=to, tier=tier)
        return respond(await answered(tenant).sessions(tenant, model, by, non_interactive),
                       ("sessions", sessions_table) if as_csv else None)

    return router
