"""Alert rules over the API: create, list, read, replace, delete, and each rule's history.

Rules belong to the caller's tenant (``serving.tenant_dependency``); another tenant's rule is a 404.
The metric and filters are checked exactly like a dashboard query's (``serving.query.spec``).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from serving.alerts.rules import AlertError, Rule, parse_condition, parse_window, validate_rule, window_text
from serving.alerts.store import AlertState, AlertStore
from serving.analytics.kpis import KpiStore
from serving.context import Serving
from serving.query.models import FilterModel
from serving.webhook_guard import EgressPolicy


class ThresholdCondition(BaseModel):
    """Fires while the window's value compares true against `value`."""

    type: Literal["threshold"]
    op: Literal["<", "<=", ">", ">="]
    value: float


class AnomalyCondition(BaseModel):
    """Fires while the window's value lies more than `k` standard deviations from the same window at the same
    time of the previous `weeks` weeks (their mean and sample standard deviation: the seasonal baseline).
    Judges whole hours: the window must be 1h … 24h and ends at the last settled hour."""

    type: Literal["anomaly"]
    k: float = Field(3.0, gt=0, le=100, description="standard deviations")
    weeks: int = Field(4, ge=2, le=8, description="previous weeks making the baseline")
    direction: Literal["both", "drop", "rise"] = "both"


class ChangeCondition(BaseModel):
    """Fires while the window changed by more than `percent` against the window just before it."""

    type: Literal["change"]
    direction: Literal["drop", "rise"]
    percent: float = Field(gt=0, description="e.g. 20 for a drop of more than 20 %")


Condition = Annotated[ThresholdCondition | ChangeCondition | AnomalyCondition, Field(discriminator="type")]


class RuleIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["checkout traffic drop"])
    metric: str = Field(description="a metric from /v1/catalog or one of the tenant's KPIs (/v1/kpis)",
                        examples=["page_views"])
    filters: list[FilterModel] = Field(default_factory=list, description="dimension filters, as in POST /v1/query")
    window: str = Field("5m", description="whole minutes: 1m … 24h; a change rule compares it with the one before",
                        examples=["5m"])
    condition: Condition = Field(examples=[{"type": "change", "direction": "drop", "percent": 20}])
    webhook_url: str = Field(description="receives Slack-compatible JSON (POST) on firing and on recovery",
                             examples=["https://hooks.slack.com/services/T000/B000/XXXX"])
    enabled: bool = True


class StateOut(BaseModel):
    state: Literal["ok", "firing"]
    incident_id: str = Field(description="the current or last incident, empty if it never fired")
    since: datetime | None = None
    evaluated_at: datetime | None = None
    value: float | None = Field(None, description="the window's value at the last evaluation")
    baseline: float | None = Field(None, description="the previous window's value (change rules) or the mean of "
                                                     "the previous weeks' (anomaly rules)")
    pending_notifications: int = Field(description="notifications not yet delivered (retried every tick)")


class RuleOut(BaseModel):
    id: str
    tenant: str
    name: str
    metric: str
    filters: list[dict[str, Any]]
    window: str
    condition: dict[str, Any]
    webhook_url: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
    state: StateOut


class RuleList(BaseModel):
    rules: list[RuleOut]


class HistoryItem(BaseModel):
    at: datetime
    kind: str = Field(description="transition (the state changed), delivered, delivery_failed (retried next tick), "
                                  "rejected (a 4xx the receiver will not change its mind about), dropped")
    state: str = Field(description="the state after a transition, or the notification's status (firing/resolved)")
    incident_id: str
    notification_id: str
    value: float | None = None
    baseline: float | None = Field(None, description="change rules: the previous window's value; anomaly rules: "
                                                     "the seasonal baseline's mean (detail lists each week's value, "
                                                     "the standard deviation and how many σ away the value was)")
    window_start: datetime | None = None
    window_end: datetime | None = None
    attempt: int = 0
    http_status: int | None = None
    detail: str = ""


class History(BaseModel):
    rule_id: str
    entries: list[HistoryItem]


def _rule_from(body: RuleIn, tenant: str, rule_id: str, egress: EgressPolicy, kpis: KpiStore | None,
               created_at: datetime | None = None) -> Rule:
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # stored to the millisecond
    rule = Rule(
        id=rule_id, tenant=tenant, name=body.name, metric=body.metric,
        filters=[f.model_dump(exclude_none=True) for f in body.filters], window_minutes=parse_window(body.window),
        condition=parse_condition(body.condition.model_dump()), webhook_url=body.webhook_url, enabled=body.enabled,
        created_at=created_at or now, updated_at=now,
    )
    return validate_rule(rule, now, egress, kpis.named(tenant, {body.metric}) if kpis is not None else None)


def rule_out(rule: Rule, state: AlertState) -> RuleOut:
    return RuleOut(
        id=rule.id, tenant=rule.tenant, name=rule.name, metric=rule.metric, filters=rule.filters,
        window=window_text(rule.window_minutes), condition=rule.condition.as_dict(), webhook_url=rule.webhook_url,
        enabled=rule.enabled, created_at=rule.created_at, updated_at=rule.updated_at,
        state=StateOut(state=state.state, incident_id=state.incident_id, since=state.since,
                       evaluated_at=state.evaluated_at, value=state.value, baseline=state.baseline,
                       pending_notifications=len(state.outbox)),
    )


def alerts_router(serving: Serving, alerts: AlertStore | None = None) -> APIRouter:
    router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
    store = alerts or AlertStore(serving.store)
    tenant_of = serving.tenant_dependency
    egress = EgressPolicy.from_settings(serving.settings)
    not_found = {404: {"description": "no such rule for this tenant"}}
    invalid = {400: {"description": "the rule is invalid; the message says what to send"}}

    def existing(tenant: str, rule_id: str) -> Rule:
        rule = store.rule(tenant, rule_id)
        if rule is None:
            raise HTTPException(404, f"no alert rule {rule_id!r} for this tenant; GET /v1/alerts lists them")
        return rule

    def checked(make: Any) -> Rule:
        try:
            return make()
        except AlertError as exc:
            raise HTTPException(400, str(exc)) from None

    @router.post("", status_code=201, response_model=RuleOut, responses=invalid,
                 summary="Create an alert rule (threshold, change against the previous window, or anomaly against the "
                         "same time of the previous weeks)")
    def create(body: RuleIn, tenant: str = Depends(tenant_of)) -> RuleOut:
        rule = checked(lambda: _rule_from(body, tenant, uuid.uuid4().hex, egress, serving.kpis))
        store.put_rule(rule)
        return rule_out(rule, AlertState(tenant, rule.id))

    @router.get("", response_model=RuleList, summary="The tenant's alert rules with their current state")
    def list_rules(tenant: str = Depends(tenant_of)) -> RuleList:
        states = store.states(tenant)
        return RuleList(rules=[rule_out(r, states.get((tenant, r.id)) or AlertState(tenant, r.id))
                               for r in store.rules(tenant)])

    @router.get("/{rule_id}", response_model=RuleOut, responses=not_found, summary="One rule and its state")
    def get_rule(rule_id: str, tenant: str = Depends(tenant_of)) -> RuleOut:
        return rule_out(existing(tenant, rule_id), store.state(tenant, rule_id))

    @router.put("/{rule_id}", response_model=RuleOut, responses={**not_found, **invalid},
                summary="Replace a rule (its incident state is kept: a firing rule whose new condition holds "
                        "no more recovers with a notice)")
    def put_rule(rule_id: str, body: RuleIn, tenant: str = Depends(tenant_of)) -> RuleOut:
        old = existing(tenant, rule_id)
        rule = checked(lambda: _rule_from(body, tenant, rule_id, egress, serving.kpis, created_at=old.created_at))
        store.put_rule(rule)
        return rule_out(rule, store.state(tenant, rule_id))

    @router.delete("/{rule_id}", status_code=204, responses=not_found,
                   summary="Delete a rule (notifications still queued for it are dropped)")
    def delete_rule(rule_id: str, tenant: str = Depends(tenant_of)) -> None:
        rule = existing(tenant, rule_id)
        store.put_rule(replace(rule, updated_at=datetime.now(UTC)), deleted=True)

    @router.get("/{rule_id}/history", response_model=History, responses=not_found,
                summary="State changes and notification deliveries (with HTTP status), oldest first")
    def history(rule_id: str, tenant: str = Depends(tenant_of),
                limit: int = Query(100, ge=1, le=10_000, description="the newest entries to return")) -> History:
        existing(tenant, rule_id)
        return History(rule_id=rule_id, entries=[HistoryItem(**row) for row in store.history(tenant, rule_id, limit)])

    return router
