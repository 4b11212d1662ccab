"""Compiles a dashboard metric request into parameterised SQL over the hot rollups.

Only names from the whitelists below reach the statement text; every value a user typed travels as
a typed ClickHouse query parameter. Anything else is refused with a ``QueryError`` naming the
accepted choices, which the API turns into a 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from common.settings import REPO_ROOT

SERIES_SQL = (REPO_ROOT / "sql" / "clickhouse" / "queries" / "metric_series.sql").read_text()


@dataclass(frozen=True)
class Metric:
    aggregate: str  # SQL over rollups_1m columns; a constant, never user text
    event: str | None = None  # restricts the metric to one event name
    description: str = ""


METRICS: dict[str, Metric] = {
    "events": Metric("sum(events)", description="all events"),
    "page_views": Metric("sum(events)", "page_view", "page_view events"),
    "clicks": Metric("sum(events)", "click", "click events"),
    "signups": Metric("sum(events)", "signup", "signup events"),
    "purchases": Metric("sum(events)", "purchase", "purchase events"),
    "revenue": Metric("sum(revenue)", description="sum of the events' revenue"),
    "unique_users": Metric("uniqMerge(users)", description="distinct user_id (mergeable uniq, error < 2 %)"),
}
DIMENSIONS = ("event", "country", "device", "page")
GRANULARITIES = {"minute": 60, "hour": 3600, "day": 86400}
HOT_HORIZON = timedelta(days=7)
_RANGE = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class QueryError(ValueError):
    """The request cannot be answered as asked; the message lists what is accepted."""


@dataclass
class MetricRequest:
    name: str
    tenant: str
    start: datetime
    end: datetime
    granularity: str
    group_by: list[str] = field(default_factory=list)
    filters: dict[str, list[str]] = field(default_factory=dict)


def parse_range(text: str) -> timedelta:
    match = _RANGE.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise QueryError(f"range {text!r} is not like 15m, 6h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def auto_granularity(span: timedelta) -> str:
    if span <= timedelta(hours=3):
        return "minute"
    if span <= timedelta(days=3):
        return "hour"
    return "day"


def build_request(
    *,
    name: str,
    tenant: str,
    range_text: str | None,
    start: datetime | None,
    end: datetime | None,
    group_by: str | None,
    filters: list[str],
    granularity: str | None,
    now: datetime,
) -> MetricRequest:
    if name not in METRICS:
        raise QueryError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")
    end = (end or now).astimezone(UTC)
    if start is None:
        start = end - parse_range(range_text or "1h")
    start = start.astimezone(UTC)
    if start >= end:
        raise QueryError("the range is empty: `from` must be before `to`")
    if start < now - HOT_HORIZON - timedelta(minutes=1):
        raise QueryError(
            f"the range starts {start:%Y-%m-%d %H:%M}, beyond the hot tier's {HOT_HORIZON.days} days; "
            "older ranges are served by the warm and cold tiers"
        )
    dims = [d for d in (group_by or "").split(",") if d]
    for dim in dims:
        if dim not in DIMENSIONS:
            raise QueryError(f"unknown dimension {dim!r} in group_by; known: {', '.join(DIMENSIONS)}")
    parsed: dict[str, list[str]] = {}
    for item in filters:
        dim, sep, value = item.partition(":")
        if not sep:
            raise QueryError(f"filter {item!r} is not dimension:value, e.g. device:mobile")
        if dim not in DIMENSIONS:
            raise QueryError(f"unknown dimension {dim!r} in filter; known: {', '.join(DIMENSIONS)}")
        parsed.setdefault(dim, []).append(value)
    gran = granularity or auto_granularity(end - start)
    if gran not in GRANULARITIES:
        raise QueryError(f"unknown granularity {gran!r}; known: {', '.join(GRANULARITIES)}")
    return MetricRequest(name, tenant, start, end, gran, dims, parsed)


def compile_series(request: MetricRequest) -> tuple[str, dict[str, object]]:
    """SQL text (whitelisted names only) and its typed parameters."""
    metric = METRICS[request.name]
    params: dict[str, object] = {
        "bucket_seconds": GRANULARITIES[request.granularity],
        "tenant": request.tenant,
        "start": request.start.replace(tzinfo=None),
        "end": request.end.replace(tzinfo=None),
    }
    conditions = []
    if metric.event is not None:
        conditions.append("AND event = {metric_event:String}")
        params["metric_event"] = metric.event
    for dim, values in request.filters.items():
        conditions.append(f"AND {dim} IN {{f_{dim}:Array(String)}}")
        params[f"f_{dim}"] = values
    sql = (
        SERIES_SQL.replace("{group_columns}", "".join(f"{d}, " for d in request.group_by))
        .replace("{aggregate}", metric.aggregate)
        .replace("{conditions}", "\n  ".join(conditions))
        .replace("{group_by}", "".join(f", {d}" for d in request.group_by))
    )
    return sql, params
