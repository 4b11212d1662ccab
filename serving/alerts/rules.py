"""Alert rules and how one evaluation is judged: pure logic, no I/O (the evaluator does the I/O).

A rule watches one metric or one of the tenant's KPIs (with the dashboard filters, validated by
``serving.query.spec``) over a window of whole minutes that ends at the last *settled* minute: the minute
that closed at least ``alert_settle_seconds`` ago, so the stream's in-flight minute never looks like a
drop. A rule fires on a threshold (``value < N``), on a relative change against the window just before
(``drop > 20 %``), or on an anomaly against a seasonal baseline: the same window at the same time of the
previous ``weeks`` weeks, firing when the value lies more than ``k`` standard deviations from their mean.
Weekly seasonality needs data weeks old, which only the hot tier's hourly rollups keep (90 days): an
anomaly rule therefore judges whole hours, its window ending at the last settled hour boundary.

An incident is a state machine with two states, ``ok`` and ``firing``: a notification is queued only
when the state changes (one when it fires, one when it recovers), never while it stays the same.
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from common.events import format_ts
from serving.query.kpi import Kpi
from serving.query.spec import METRICS, QueryError, SpecInput, build_spec, parse_range
from serving.webhook_guard import EgressPolicy, EgressRefused

THRESHOLD_OPS = ("<", "<=", ">", ">=")
DIRECTIONS = ("drop", "rise")
ANOMALY_DIRECTIONS = ("both", "drop", "rise")
MIN_WEEKS, MAX_WEEKS = 2, 8  # eight weeks back stays inside the hot tier's 90 days of hourly rollups
MAX_WINDOW_MINUTES = 24 * 60
OK, FIRING = "ok", "firing"
# notification kinds (also the Slack message's colour and the machine-readable `status`)
FIRED, RESOLVED = "firing", "resolved"


class AlertError(ValueError):
    """A rule cannot be accepted as sent; the message says what to send instead."""


@dataclass(frozen=True)
class Condition:
    type: str  # threshold | change | anomaly
    op: str = ""  # threshold: < <= > >=
    value: float = 0.0  # threshold: the bound
    direction: str = ""  # change: drop | rise; anomaly: both | drop | rise
    percent: float = 0.0  # change: how much, in percent of the previous window
    k: float = 0.0  # anomaly: how many standard deviations from the baseline's mean
    weeks: int = 0  # anomaly: how many previous weeks make the baseline

    def as_dict(self) -> dict[str, Any]:
        if self.type == "threshold":
            return {"type": "threshold", "op": self.op, "value": self.value}
        if self.type == "anomaly":
            return {"type": "anomaly", "direction": self.direction, "k": self.k, "weeks": self.weeks}
        return {"type": "change", "direction": self.direction, "percent": self.percent}

    def describe(self) -> str:
        if self.type == "threshold":
            return f"{self.op} {self.value:g}"
        if self.type == "anomaly":
            side = {"both": "away from", "drop": "below", "rise": "above"}[self.direction]
            return f"more than {self.k:g} σ {side} the same time of the previous {self.weeks} weeks"
        return f"{self.direction} > {self.percent:g} % vs the previous window"


def parse_condition(raw: dict[str, Any]) -> Condition:
    kind = raw.get("type")
    if kind == "threshold":
        op = raw.get("op")
        if op not in THRESHOLD_OPS:
            raise AlertError(f"a threshold condition needs op one of {', '.join(THRESHOLD_OPS)}, got {op!r}")
        return Condition("threshold", op=op, value=_number(raw.get("value"), "threshold value"))
    if kind == "change":
        direction = raw.get("direction")
        if direction not in DIRECTIONS:
            raise AlertError(f"a change condition needs direction 'drop' or 'rise', got {direction!r}")
        percent = _number(raw.get("percent"), "change percent")
        if not 0 < percent <= (100 if direction == "drop" else 1_000_000):
            raise AlertError("percent must be above 0 (and at most 100 for a drop)")
        return Condition("change", direction=direction, percent=percent)
    if kind == "anomaly":
        direction = raw.get("direction") or "both"
        if direction not in ANOMALY_DIRECTIONS:
            raise AlertError(f"an anomaly condition's direction is one of {', '.join(ANOMALY_DIRECTIONS)}, "
                             f"got {direction!r}")
        k = _number(raw.get("k", 3), "anomaly k")
        weeks = raw.get("weeks", 4)
        if not 0 < k <= 100:
            raise AlertError("k (standard deviations) must be above 0 and at most 100")
        if isinstance(weeks, bool) or not isinstance(weeks, int) or not MIN_WEEKS <= weeks <= MAX_WEEKS:
            raise AlertError(f"weeks must be a whole number from {MIN_WEEKS} to {MAX_WEEKS}, got {weeks!r}")
        return Condition("anomaly", direction=direction, k=k, weeks=weeks)
    raise AlertError(
        "condition.type must be 'threshold' ({'type': 'threshold', 'op': '<', 'value': 100}), 'change' "
        "({'type': 'change', 'direction': 'drop', 'percent': 20}) or 'anomaly' "
        "({'type': 'anomaly', 'k': 3, 'weeks': 4, 'direction': 'both'})"
    )


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AlertError(f"{what} must be a number, got {value!r}")
    return float(value)


def parse_window(text: str) -> int:
    """``5m``, ``1h`` … as whole minutes (rollups are per minute), between 1 minute and 1 day."""
    try:
        seconds = int(parse_range(text).total_seconds())
    except QueryError as exc:
        raise AlertError(f"window {text!r} is not like 5m or 1h") from exc
    if seconds % 60 or not 1 <= seconds // 60 <= MAX_WINDOW_MINUTES:
        raise AlertError(f"window must be whole minutes between 1m and {MAX_WINDOW_MINUTES // 60}h, got {text!r}")
    return seconds // 60


def window_text(minutes: int) -> str:
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


@dataclass(frozen=True)
class Rule:
    id: str
    tenant: str
    name: str
    metric: str
    filters: list[dict[str, Any]]
    window_minutes: int
    condition: Condition
    webhook_url: str
    enabled: bool = True
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def spec_input(self, start: datetime, end: datetime) -> SpecInput:
        """The rule's question over one window: a total from the hot tier, exact to the minute (an anomaly
        rule's whole hours, weeks back, come from its hourly rollups: ``auto`` picks them)."""
        return SpecInput(metrics=[self.metric], start=start, end=end, filters=list(self.filters),
                         tier="auto" if self.condition.type == "anomaly" else "hot")


def validate_rule(rule: Rule, now: datetime, egress: EgressPolicy | None = None,
                  kpis: Mapping[str, Kpi] | None = None) -> Rule:
    """Check the metric (or KPI: ``kpis``, the tenant's by name), filters and webhook the way every query is
    checked; returns the normalised rule.

    The webhook's host must not be, nor now resolve to, a non-public address (``egress``: the strict
    default allows none); every delivery checks again, since what a name resolves to can change."""
    if not rule.name.strip():
        raise AlertError("name must not be empty")
    kpis = kpis or {}
    if rule.metric not in METRICS and rule.metric not in kpis:
        raise AlertError(f"unknown metric {rule.metric!r}; known: {', '.join([*METRICS, *kpis])} "
                         "(GET /v1/kpis lists the tenant's KPIs)")
    if rule.condition.type == "anomaly" and rule.window_minutes % 60:
        raise AlertError("an anomaly rule judges whole hours (its baseline comes from hourly rollups weeks back): "
                         f"use a window of 1h to {MAX_WINDOW_MINUTES // 60}h")
    try:
        spec = build_spec(rule.spec_input(now - timedelta(minutes=rule.window_minutes), now), now=now, kpis=kpis)
    except QueryError as exc:
        raise AlertError(str(exc)) from exc
    if any(f.on_metric for f in spec.filters):
        raise AlertError("a rule's filters narrow dimensions (event, country, device, page); metric bounds belong "
                         "in its condition")
    if not _usable_url(rule.webhook_url):
        raise AlertError(f"webhook_url must be an http:// or https:// URL with a host, got {rule.webhook_url!r}")
    url = httpx.URL(rule.webhook_url)
    try:
        (egress or EgressPolicy()).check_at_creation(url.host, url.port or (443 if url.scheme == "https" else 80))
    except EgressRefused as exc:
        raise AlertError(str(exc)) from None
    filters = [{"field": f.field, "op": f.op, "values": list(f.values)} for f in spec.filters]
    return replace(rule, name=rule.name.strip(), filters=filters)


def _usable_url(text: str) -> bool:
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError):
        return False
    return url.scheme in ("http", "https") and bool(url.host) and not any(c.isspace() for c in text)


def evaluation_end(now: datetime, settle_seconds: float, step_seconds: int = 60) -> datetime:
    """The end of the newest window to judge: the last minute (or ``step_seconds``: hour) boundary at least
    ``settle_seconds`` ago."""
    settled = int((now - timedelta(seconds=settle_seconds)).timestamp())
    return datetime.fromtimestamp(settled - settled % step_seconds, UTC)


def rule_end(rule: Rule, now: datetime, settle_seconds: float) -> datetime:
    """Where this rule's newest window ends: a minute boundary, or an hour boundary for an anomaly rule."""
    return evaluation_end(now, settle_seconds, 3600 if rule.condition.type == "anomaly" else 60)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def windows(rule: Rule, end: datetime) -> tuple[Window, Window | None]:
    """The window judged and, for a change rule, the one just before it (same length)."""
    length = timedelta(minutes=rule.window_minutes)
    current = Window(end - length, end)
    previous = Window(end - 2 * length, end - length) if rule.condition.type == "change" else None
    return current, previous


def seasonal_windows(rule: Rule, current: Window) -> list[Window]:
    """The same window at the same time of each of the previous ``weeks`` weeks, the most recent first."""
    week = timedelta(days=7)
    return [Window(current.start - n * week, current.end - n * week) for n in range(1, rule.condition.weeks + 1)]


@dataclass(frozen=True)
class Verdict:
    breached: bool | None  # None: nothing to compare (a change from an empty window, a KPI undefined) — kept
    value: float | None  # None: a KPI undefined in the window (x / 0)
    baseline: float | None = None  # the previous window's value, or the seasonal baseline's mean
    change_percent: float | None = None  # + rise, - drop
    stddev: float | None = None  # anomaly: the seasonal baseline's sample standard deviation
    baselines: tuple[float | None, ...] = ()  # anomaly: each previous week's value, the most recent first
    sigmas: float | None = None  # anomaly: (value - mean) / stddev; None when stddev is 0

    def summary(self, metric: str) -> str:
        text = f"{metric} = {'null' if self.value is None else format(self.value, 'g')}"
        if self.baselines:
            weeks = ", ".join("null" if b is None else f"{b:g}" for b in self.baselines)
            spread = f" ± {self.stddev:.4g}" if self.stddev is not None else ""
            away = f", {self.sigmas:+.2f} σ" if self.sigmas is not None else ""
            mean = "null" if self.baseline is None else f"{self.baseline:.4g}"
            text += f" (baseline {mean}{spread} from the previous weeks: {weeks}{away})"
        elif self.baseline is not None:
            text += f" (previous window {self.baseline:g}"
            text += f", {self.change_percent:+.1f} %)" if self.change_percent is not None else ")"
        return text


def judge_anomaly(condition: Condition, value: float | None, baselines: list[float | None]) -> Verdict:
    """Beyond ``k`` sample standard deviations of the previous weeks' values (those defined; at least two)
    in the rule's direction. A flat baseline (σ = 0) makes any move in that direction an anomaly."""
    known = [b for b in baselines if b is not None]
    if len(known) < 2:
        return Verdict(None, value, baselines=tuple(baselines))
    mean = statistics.fmean(known)
    stddev = statistics.stdev(known)
    if value is None:
        return Verdict(None, value, mean, stddev=stddev, baselines=tuple(baselines))
    deviation = value - mean
    sigmas = deviation / stddev if stddev > 0 else None
    # a flat baseline: any move is infinitely many σ away
    distance = sigmas if sigmas is not None else math.copysign(math.inf, deviation) if deviation else 0.0
    breached = {"both": abs(distance) > condition.k, "rise": distance > condition.k,
                "drop": -distance > condition.k}[condition.direction]
    return Verdict(breached, value, mean, stddev=stddev, baselines=tuple(baselines),
                   sigmas=None if sigmas is None else round(sigmas, 4))


def judge(condition: Condition, value: float | None, baseline: float | None = None) -> Verdict:
    if value is None:  # a KPI undefined in the window: nothing to judge, the state is kept
        return Verdict(None, value, baseline)
    if condition.type == "threshold":
        breached = {"<": value < condition.value, "<=": value <= condition.value,
                    ">": value > condition.value, ">=": value >= condition.value}[condition.op]
        return Verdict(breached, value)
    baseline = baseline or 0.0
    if baseline == 0:
        # No baseline: a rise from nothing is infinite and a drop impossible; both windows empty tell nothing
        # (a dead metric must not resolve a traffic-drop incident), so the state is kept.
        if value == 0:
            return Verdict(None, value, baseline)
        return Verdict(condition.direction == "rise", value, baseline)
    change = (value - baseline) / baseline * 100
    breached = -change > condition.percent if condition.direction == "drop" else change > condition.percent
    return Verdict(breached, value, baseline, round(change, 2))


def transition(state: str, verdict: Verdict) -> str | None:
    """The notification an evaluation causes: FIRED (ok → firing), RESOLVED (firing → ok) or None."""
    if verdict.breached is None:
        return None
    if verdict.breached and state == OK:
        return FIRED
    if not verdict.breached and state == FIRING:
        return RESOLVED
    return None


def new_incident_id() -> str:
    return uuid.uuid4().hex


def notification(rule: Rule, kind: str, incident_id: str, verdict: Verdict, window: Window,
                 at: datetime) -> dict[str, Any]:
    """A Slack-compatible message (``text`` + ``attachments``) that also carries machine-readable fields.

    Its ``id`` is fixed per incident and kind, so a receiver can drop the rare duplicate (a delivery whose
    success could not be recorded before a crash is sent again)."""
    firing = kind == FIRED
    headline = (f"[FIRING] {rule.name}: {verdict.summary(rule.metric)} — condition {rule.condition.describe()} "
                f"over {window_text(rule.window_minutes)}" if firing
                else f"[RESOLVED] {rule.name}: {verdict.summary(rule.metric)}")
    filters = ", ".join(f"{f['field']} {f['op']} {'|'.join(map(str, f['values']))}" for f in rule.filters) or "none"
    window_fields = {"window_start": format_ts(window.start, "auto"), "window_end": format_ts(window.end, "auto")}
    return {
        "id": f"{incident_id}:{kind}",
        "text": headline,
        "attachments": [{
            "color": "danger" if firing else "good",
            "fields": [
                {"title": "metric", "value": rule.metric, "short": True},
                {"title": "filters", "value": filters, "short": True},
                {"title": "window", "value": f"{window_fields['window_start']} – {window_fields['window_end']}",
                 "short": False},
            ],
        }],
        "alert": {
            "status": kind, "rule_id": rule.id, "rule_name": rule.name, "tenant": rule.tenant,
            "incident_id": incident_id, "metric": rule.metric, "filters": rule.filters,
            "condition": rule.condition.as_dict(), "window": window_text(rule.window_minutes), **window_fields,
            "value": verdict.value, "baseline": verdict.baseline, "change_percent": verdict.change_percent,
            **({"baseline_stddev": verdict.stddev, "baseline_values": list(verdict.baselines),
                "sigmas": verdict.sigmas} if rule.condition.type == "anomaly" else {}),
            "at": format_ts(at, "auto"),
        },
    }


