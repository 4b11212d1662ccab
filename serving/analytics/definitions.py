"""The questions product analytics answers, validated: funnels, retention, paths and session metrics.

Each request becomes a frozen spec here. Names (event names are values, dimensions are names) are checked
against the catalogue so that only whitelisted column names ever reach a SQL text; event names and filter
values travel as query parameters. ``docs/product-analytics.md`` states every definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from common.events import EVENT_NAME
from serving.analytics.profiles import is_profile_field
from serving.query.spec import DIMENSIONS, QueryError

# what a step's filters and a breakdown may name, besides a user profile's property (profile.<name>)
FILTER_DIMENSIONS = ("country", "device", "page")
BREAKDOWN_DIMENSIONS = ("country", "device", "page")
MIN_STEPS, MAX_STEPS = 2, 10
FUNNEL_MODES = ("ordered", "strict", "any")
UNITS = ("users", "sessions")
PERIODS = ("day", "week", "month")
RETENTION_MODES = ("on", "on_or_after")
TIERS = ("auto", "hot", "lake")
MAX_PATH_STEPS = 5
DEFAULT_WINDOW = timedelta(days=14)
MAX_WINDOW = timedelta(days=366)
SESSION_CUT = timedelta(hours=24)
assert set(FILTER_DIMENSIONS) <= set(DIMENSIONS)


@dataclass(frozen=True)
class StepFilter:
    field: str
    op: str  # = != in "not in"
    values: tuple[str, ...]

    def accepts(self, value: str) -> bool:
        inside = value in self.values
        return inside if self.op in ("=", "in") else not inside


@dataclass(frozen=True)
class Step:
    event: str
    filters: tuple[StepFilter, ...] = ()

    def matches(self, event: str, dims: dict[str, str]) -> bool:
        return event == self.event and all(f.accepts(dims[f.field]) for f in self.filters)


@dataclass(frozen=True)
class Exclusion:
    step: Step
    from_step: int  # 1-based: the unit did the excluded event after this step ...
    to_step: int  # ... and before this one


@dataclass(frozen=True)
class FunnelSpec:
    steps: tuple[Step, ...]
    start: datetime
    end: datetime
    window: timedelta = DEFAULT_WINDOW
    unit: str = "users"
    mode: str = "ordered"
    exclusions: tuple[Exclusion, ...] = ()
    breakdown: str | None = None
    breakdown_limit: int = 10
    tier: str = "auto"

    @property
    def event_names(self) -> list[str]:
        return sorted({s.event for s in self.steps} | {x.step.event for x in self.exclusions})

    @property
    def profile_fields(self) -> list[str]:
        """The user profile properties (``profile.<name>``) the steps' filters and the breakdown name."""
        named = {f.field for s in (*self.steps, *(x.step for x in self.exclusions)) for f in s.filters}
        named |= {self.breakdown} if self.breakdown else set()
        return sorted(f for f in named if is_profile_field(f))


@dataclass(frozen=True)
class RetentionSpec:
    start_event: str
    return_event: str
    start: datetime
    end: datetime
    period: str = "week"
    periods: int = 8
    mode: str = "on"
    breakdown: str | None = None
    tier: str = "auto"


@dataclass(frozen=True)
class PathsSpec:
    start: datetime
    end: datetime
    start_event: str | None = None
    end_event: str | None = None
    steps: int = MAX_PATH_STEPS
    edge_limit: int = 50
    tier: str = "auto"


@dataclass(frozen=True)
class SessionsSpec:
    start: datetime
    end: datetime
    by: str | None = None  # entry_page | exit_page
    non_interactive: tuple[str, ...] = ()
    tier: str = "auto"


@dataclass
class RangeInput:
    start: datetime
    end: datetime
    extra: dict[str, Any] = field(default_factory=dict)


def event_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not EVENT_NAME.match(value):
        raise QueryError(f"{what} must be an event name (1-64 letters, digits, _ . : -), got {value!r}")
    return value


def one_of(value: Any, allowed: tuple[str, ...], what: str) -> Any:
    if value not in allowed:
        raise QueryError(f"unknown {what} {value!r}; use one of: {', '.join(allowed)}")
    return value


def dimension(value: Any, allowed: tuple[str, ...], what: str) -> str:
    """A dimension of the events, or a property of the user's profile (``profile.plan``)."""
    if isinstance(value, str) and is_profile_field(value):
        return value
    if value not in allowed:
        raise QueryError(f"unknown {what} {value!r}; use one of: {', '.join(allowed)} or profile.<property>")
    return value


def step_filter(raw: dict[str, Any]) -> StepFilter:
    name = dimension(raw.get("field"), FILTER_DIMENSIONS, "step filter field")
    op = one_of(raw.get("op", "="), ("=", "!=", "in", "not in"), "step filter op")
    values = raw.get("values") if raw.get("values") is not None else [raw.get("value")]
    if not values or any(not isinstance(v, str) for v in values):
        raise QueryError(f"the filter on {name} needs a string value (or values)")
    if op in ("=", "!=") and len(values) != 1:
        raise QueryError(f"'{op}' takes one value; use 'in' or 'not in' for several")
    return StepFilter(name, op, tuple(values))


def step(raw: dict[str, Any], what: str) -> Step:
    return Step(event_name(raw.get("event"), f"{what}'s event"),
                tuple(step_filter(f) for f in raw.get("filters") or []))


def check_range(start: datetime, end: datetime) -> None:
    if end <= start:
        raise QueryError("'to' must be after 'from'")


def funnel_spec(raw: dict[str, Any], start: datetime, end: datetime) -> FunnelSpec:
    check_range(start, end)
    steps = raw.get("steps") or []
    if not MIN_STEPS <= len(steps) <= MAX_STEPS:
        raise QueryError(f"a funnel has {MIN_STEPS} to {MAX_STEPS} steps, got {len(steps)}")
    window = raw.get("window") or DEFAULT_WINDOW
    if not timedelta(seconds=1) <= window <= MAX_WINDOW:
        raise QueryError(f"the conversion window must be between 1 s and {MAX_WINDOW.days} days")
    exclusions = []
    for i, x in enumerate(raw.get("exclusions") or []):
        a, b = x.get("from_step", 1), x.get("to_step", len(steps))
        if not (isinstance(a, int) and isinstance(b, int) and 1 <= a < b <= len(steps)):
            raise QueryError(f"exclusion {i + 1}: need 1 <= from_step < to_step <= {len(steps)}")
        exclusions.append(Exclusion(step(x, f"exclusion {i + 1}"), a, b))
    breakdown = raw.get("breakdown")
    if breakdown is not None:
        dimension(breakdown, BREAKDOWN_DIMENSIONS, "breakdown dimension")
    limit = raw.get("breakdown_limit", 10)
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise QueryError("breakdown_limit must be 1 to 100")
    return FunnelSpec(
        steps=tuple(step(s, f"step {i + 1}") for i, s in enumerate(steps)), start=start, end=end, window=window,
        unit=one_of(raw.get("unit", "users"), UNITS, "unit"), mode=one_of(raw.get("mode", "ordered"), FUNNEL_MODES,
                                                                          "mode"),
        exclusions=tuple(exclusions), breakdown=breakdown, breakdown_limit=limit,
        tier=one_of(raw.get("tier", "auto"), TIERS, "tier"))


def retention_spec(raw: dict[str, Any], start: datetime, end: datetime) -> RetentionSpec:
    check_range(start, end)
    periods = raw.get("periods", 8)
    if not isinstance(periods, int) or not 1 <= periods <= 60:
        raise QueryError("periods must be 1 to 60")
    breakdown = raw.get("breakdown")
    if breakdown is not None:
        dimension(breakdown, BREAKDOWN_DIMENSIONS, "breakdown dimension")
    return RetentionSpec(
        start_event=event_name(raw.get("start_event"), "start_event"),
        return_event=event_name(raw.get("return_event") or raw.get("start_event"), "return_event"),
        start=start, end=end, period=one_of(raw.get("period", "week"), PERIODS, "period"), periods=periods,
        mode=one_of(raw.get("mode", "on"), RETENTION_MODES, "mode"), breakdown=breakdown,
        tier=one_of(raw.get("tier", "auto"), TIERS, "tier"))


def paths_spec(raw: dict[str, Any], start: datetime, end: datetime) -> PathsSpec:
    check_range(start, end)
    if (raw.get("start_event") is None) == (raw.get("end_event") is None):
        raise QueryError("give exactly one of start_event (paths after it) or end_event (paths before it)")
    steps, limit = raw.get("steps", MAX_PATH_STEPS), raw.get("edge_limit", 50)
    if not isinstance(steps, int) or not 1 <= steps <= MAX_PATH_STEPS:
        raise QueryError(f"steps must be 1 to {MAX_PATH_STEPS}")
    if not isinstance(limit, int) or not 1 <= limit <= 50:
        raise QueryError("edge_limit must be 1 to 50")
    return PathsSpec(
        start=start, end=end,
        start_event=None if raw.get("start_event") is None else event_name(raw["start_event"], "start_event"),
        end_event=None if raw.get("end_event") is None else event_name(raw["end_event"], "end_event"),
        steps=steps, edge_limit=limit, tier=one_of(raw.get("tier", "auto"), TIERS, "tier"))


def sessions_spec(raw: dict[str, Any], start: datetime, end: datetime) -> SessionsSpec:
    check_range(start, end)
    by = raw.get("by")
    if by is not None:
        one_of(by, ("entry_page", "exit_page"), "session dimension")
    return SessionsSpec(start=start, end=end, by=by,
                        non_interactive=tuple(sorted({event_name(n, "non_interactive") for n in
                                                      raw.get("non_interactive") or []})),
                        tier=one_of(raw.get("tier", "auto"), TIERS, "tier"))
