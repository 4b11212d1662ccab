"""The previous period of a query, and the change of its totals against it.

``compare=previous_period`` answers a range and the range of equal length just before it in one
request, as every analytics tool's headline numbers do ("1,204 events, +12 % on the previous 7 days").
The previous period keeps everything but the time: same metrics, groups, filters, granularity, zone and
fill, so its buckets line up with the current ones one for one (a chart can overlay it shifted by the
period's length). Totals are asked of the engine separately (no buckets, no groups), because unique
users over a period are not the sum of unique users per bucket.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from serving.query.buckets import floor_bucket
from serving.query.spec import QueryError, QuerySpec

COMPARISONS = ("previous_period",)


def checked_comparison(compare: str | None) -> str | None:
    if compare in (None, "", "none"):
        return None
    if compare not in COMPARISONS:
        raise QueryError(f"unknown compare {compare!r}; known: {', '.join(COMPARISONS)}")
    return compare


def previous_period(spec: QuerySpec) -> QuerySpec:
    """The range of equal length that ends where ``spec``'s begins (its start on a bucket boundary: across a
    daylight-saving change the nearest local midnight, so both periods have as many days)."""
    span = spec.end - spec.start
    start = spec.start - span
    if spec.granularity:
        start = floor_bucket(start + timedelta(hours=12) if spec.granularity == "day" else start,
                             spec.granularity, spec.tz)
    return replace(spec, start=start, end=spec.start)


def totals_of(spec: QuerySpec) -> QuerySpec:
    """One total per metric over ``spec``'s range and dimension filters (value filters, groups, order and
    limit belong to the table, not to its total)."""
    return replace(spec, granularity=None, dimensions=(), order_by=(), limit=None, fill="none",
                   filters=tuple(f for f in spec.filters if not f.on_metric))


def change(metrics: tuple[str, ...], current: list[Any] | None, previous: list[Any] | None) -> dict[str, Any]:
    """Per metric: both totals, the absolute change and the change in % of the previous (null from 0)."""
    out = {}
    for i, metric in enumerate(metrics):
        now_value = current[i] if current else 0
        before = previous[i] if previous else 0
        if now_value is None or before is None:  # a KPI undefined in either period (x / 0)
            out[metric] = {"current": now_value, "previous": before, "change": None, "change_percent": None}
            continue
        delta = now_value - before
        out[metric] = {"current": now_value, "previous": before, "change": delta,
                       "change_percent": round(delta / before * 100, 2) if before else None}
    return out
