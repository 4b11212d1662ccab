"""The one shape every dashboard question takes, and its validation.

Time series, breakdowns, top-N, drill-downs, saved widgets, alerts and ad-hoc JSON queries are all a
``QuerySpec``: metrics from a fixed catalogue, dimensions and filters from a fixed list, a time range,
an optional time granularity, ordering and a limit. Users never send SQL or column names that reach a
statement unchecked: every name is looked up here, every value later travels as a typed parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from serving.query.buckets import FILLS, BadTimeZone, floor_bucket, is_utc, zone
from serving.query.kpi import Kpi


class QueryError(ValueError):
    """The request cannot be answered as asked; the message says what is accepted instead."""


class InvalidParameter(QueryError):
    """A parameter is malformed in itself (e.g. ``tz`` is no IANA zone name): answered 422, not 400."""


@dataclass(frozen=True)
class Metric:
    measure: str  # events | revenue | users: a rollup column, never user text
    event: str | None = None  # restricts the metric to one event name
    description: str = ""
    label: str = ""  # what people read on a chart

    @property
    def default_fill(self) -> str:
        """Empty buckets of counts and sums are 0; of unique users, a gap (0 would claim nobody came)."""
        return "null" if self.measure == "users" else "zero"


METRICS: dict[str, Metric] = {
    "events": Metric("events", description="all events", label="Events"),
    "page_views": Metric("events", "page_view", "page_view events", "Page views"),
    "clicks": Metric("events", "click", "click events", "Clicks"),
    "signups": Metric("events", "signup", "signup events", "Sign-ups"),
    "purchases": Metric("events", "purchase", "purchase events", "Purchases"),
    "revenue": Metric("revenue", description="sum of the events' revenue", label="Revenue"),
    "unique_users": Metric("users", description="distinct user_id (hot tier: mergeable uniq, error < 2 %)",
                           label="Unique users"),
}
DIMENSIONS = ("event", "country", "device", "page")
DIMENSION_LABELS = {
    "event": ("Event", "the event's name, e.g. page_view or purchase"),
    "country": ("Country", "the visitor's country code as sent with the event"),
    "device": ("Device", "the visitor's device type, e.g. mobile or desktop"),
    "page": ("Page", "the page path the event happened on"),
}
GRANULARITIES = {"minute": 60, "hour": 3600, "day": 86400}
TIERS = ("auto", "hot", "warm", "cold")
DIMENSION_OPS = ("=", "!=", "in", "not in")
METRIC_OPS = (">", ">=", "<", "<=", "between")
MAX_LIMIT = 10_000
_RANGE = re.compile(r"^(\d+)([mhdy])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "y": 365 * 86400}


@dataclass(frozen=True)
class Filter:
    """``dimension op values`` (WHERE) or ``metric op values`` (HAVING, for value ranges)."""

    field: str
    op: str
    values: tuple[Any, ...]
    on_kpi: bool = False  # a value range on one of the tenant's KPIs (applied after the formula)

    @property
    def on_metric(self) -> bool:
        return self.on_kpi or self.field in METRICS


@dataclass(frozen=True)
class Order:
    field: str
    descending: bool = True


@dataclass(frozen=True)
class QuerySpec:
    metrics: tuple[str, ...]
    start: datetime
    end: datetime
    granularity: str | None = None  # None: one total per group
    dimensions: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()
    order_by: tuple[Order, ...] = ()
    limit: int | None = None
    tier: str = "auto"
    tz: str = "UTC"  # the zone whose calendar days the day buckets are
    fill: str = "none"  # empty buckets: auto (per metric), zero, null or none (left out)
    # the tenant's KPIs this question names (as metrics, in filters or in its order): computed from their
    # catalogue metrics by the engine (serving.query.kpi_rows), never compiled to SQL
    kpis: tuple[Kpi, ...] = ()

    @property
    def local_days(self) -> bool:
        """Day buckets that are not UTC days: they must be built from hourly rows."""
        return self.granularity == "day" and not is_utc(self.tz)

    def cache_identity(self) -> dict[str, Any]:
        """Everything that changes the answer, in a stable form (the cache key is made from it)."""
        return {
            "metrics": self.metrics, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "granularity": self.granularity, "dimensions": self.dimensions,
            "filters": sorted((f.field, f.op, [str(v) for v in f.values]) for f in self.filters),
            "order_by": [(o.field, o.descending) for o in self.order_by], "limit": self.limit, "tier": self.tier,
            "tz": self.tz, "fill": self.fill,
        } | ({"kpis": [(k.name, k.formula) for k in self.kpis]} if self.kpis else {})


@dataclass
class SpecInput:
    """A spec as a client sends it (JSON body of ``POST /v1/query``, or built from GET parameters)."""

    metrics: list[str]
    range: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    granularity: str | None = None
    dimensions: list[str] = field(default_factory=list)
    filters: list[dict[str, Any]] = field(default_factory=list)
    order_by: list[dict[str, Any]] = field(default_factory=list)
    limit: int | None = None
    tier: str = "auto"
    tz: str = "UTC"
    fill: str = "none"


def parse_range(text: str) -> timedelta:
    match = _RANGE.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise QueryError(f"range {text!r} is not like 15m, 6h, 7d or 1y")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def auto_granularity(span: timedelta) -> str:
    """About 60–200 points per chart: minutes up to 3 h, hours up to 7 d, days beyond."""
    if span <= timedelta(hours=3):
        return "minute"
    if span <= timedelta(days=7):
        return "hour"
    return "day"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _known(kind: str, name: str, known: tuple[str, ...] | list[str]) -> str:
    if name not in known:
        raise QueryError(f"unknown {kind} {name!r}; known: {', '.join(known)}")
    return name


def _filter(raw: dict[str, Any], kpis: Mapping[str, Kpi]) -> Filter:
    if not isinstance(raw, dict):
        raise QueryError(f"a filter is an object like {{'field': 'country', 'op': '=', 'value': 'US'}}, not {raw!r}")
    name = raw.get("field", raw.get("dimension"))
    op = str(raw.get("op", "=")).lower()
    on_value = name in METRICS or name in kpis
    if on_value:
        _known("metric filter operator", op, METRIC_OPS)
    else:
        _known("filter field", str(name), [*DIMENSIONS, *METRICS, *kpis])
        _known("dimension filter operator", op, DIMENSION_OPS)
    values = raw.get("values", raw.get("value"))
    values = list(values) if isinstance(values, list | tuple) else [values]
    if any(v is None for v in values) or not values:
        raise QueryError(f"filter on {name!r} needs a 'value' (or 'values' for in / not in / between)")
    if op == "between" and len(values) != 2:
        raise QueryError(f"'between' on {name!r} takes two values [low, high]")
    if op in ("=", "!=", ">", ">=", "<", "<=") and len(values) != 1:
        raise QueryError(f"{op!r} on {name!r} takes one value; use 'in' for several")
    if on_value:
        try:
            values = [float(v) for v in values]
        except (TypeError, ValueError):
            raise QueryError(f"filter on metric {name!r} compares numbers, got {values!r}") from None
    else:
        values = [str(v) for v in values]
    return Filter(str(name), op, tuple(values), on_kpi=name in kpis and name not in METRICS)


def named_values(raw: SpecInput) -> set[str]:
    """The names a spec input uses as values (metrics, value filters, order): those outside the catalogue
    may be the tenant's KPIs, which the caller looks up before ``build_spec``."""
    names = {str(m) for m in raw.metrics}
    names |= {str(f.get("field", f.get("dimension"))) for f in raw.filters if isinstance(f, dict)}
    names |= {str(o if isinstance(o, str) else o.get("field")) for o in raw.order_by}
    return names - set(METRICS) - set(DIMENSIONS) - {"bucket"}


def build_spec(raw: SpecInput, *, now: datetime, kpis: Mapping[str, Kpi] | None = None) -> QuerySpec:
    """Validate a client's spec against the catalogue (and ``kpis``, the tenant's KPIs by name, which are
    accepted wherever a metric is); the error names the offending part."""
    kpis = {name: k for name, k in (kpis or {}).items() if name not in METRICS}
    known_metrics = [*METRICS, *kpis]
    if not raw.metrics:
        raise QueryError(f"name at least one metric; known: {', '.join(known_metrics)}")
    metrics = tuple(dict.fromkeys(_known("metric", m, known_metrics) for m in raw.metrics))
    dims = tuple(dict.fromkeys(_known("dimension", d, DIMENSIONS) for d in raw.dimensions))
    end = _utc(raw.end) or now
    start = _utc(raw.start) or end - parse_range(raw.range or "1h")
    if start >= end:
        raise QueryError("the range is empty: `from` must be before `to`")
    tz = raw.tz
    try:
        zone(tz)
    except BadTimeZone as exc:
        raise InvalidParameter(str(exc)) from None
    _known("fill", raw.fill, list(FILLS))
    granularity = raw.granularity
    if granularity == "auto":
        granularity = auto_granularity(end - start)
    if granularity is not None:
        _known("granularity", granularity, list(GRANULARITIES))
        start = floor_bucket(start, granularity, tz)  # whole buckets: the first one starts on its boundary
        if (end - start) / timedelta(seconds=GRANULARITIES[granularity]) > 50_000:
            raise QueryError(f"{granularity} buckets over this range exceed 50,000 points; pick a coarser granularity")
    filters = tuple(_filter(f, kpis) for f in raw.filters)
    orders = []
    for item in raw.order_by:
        item = {"field": item} if isinstance(item, str) else item
        name = str(item.get("field"))
        allowed = [*metrics, *dims, *(["bucket"] if granularity else [])]
        _known("order_by field (a metric or dimension of this query)", name, allowed)
        direction = str(item.get("direction", "desc")).lower()
        _known("order direction", direction, ["asc", "desc"])
        orders.append(Order(name, direction == "desc"))
    if raw.limit is not None and not 1 <= raw.limit <= MAX_LIMIT:
        raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")
    _known("tier", raw.tier, TIERS)
    fill = raw.fill
    if fill != "none" and (granularity is None or raw.limit is not None or any(f.on_metric for f in filters)
                           or any(o.field in known_metrics for o in orders)):
        if fill != "auto":
            raise QueryError("fill needs a granularity and an answer with every bucket (no limit, no metric "
                             "filter, no ordering by a metric)")
        fill = "none"  # nothing to fill: a total, or an answer cut by value
    used = {*metrics, *(f.field for f in filters if f.on_kpi), *(o.field for o in orders)}
    return QuerySpec(metrics, start, end, granularity, dims, filters, tuple(orders), raw.limit, raw.tier,
                     "UTC" if is_utc(tz) else tz, fill, tuple(kpis[n] for n in sorted(used) if n in kpis))


def parse_filter_params(items: list[str]) -> list[dict[str, Any]]:
    """GET-style filters: ``country:US``, ``device!=mobile``, ``page:/a|/b`` (several values: in)."""
    out = []
    for item in items:
        name, sep, value = item.partition("!=")
        op = "!="
        if not sep:
            name, sep, value = item.partition(":")
            op = "="
        if not sep:
            raise QueryError(f"filter {item!r} is not dimension:value or dimension!=value, e.g. device:mobile")
        values = value.split("|")
        if len(values) > 1:
            op = "in" if op == "=" else "not in"
        out.append({"field": name, "op": op, "values": values})
    return out
