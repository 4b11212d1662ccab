"""Where the buckets of a time series begin, in the viewer's time zone, and how empty ones are shown.

Minute and hour buckets are instants (UTC-aligned, the same everywhere). A day bucket is a calendar day
of the query's zone: it starts at that zone's midnight and lasts 23, 24 or 25 hours across daylight
saving changes, so days cannot be computed by dividing epoch seconds. Every bucket is named by the
epoch second it starts (the answers write it as ISO-8601 UTC).

Empty buckets: a count or a sum over no events is 0, so those are filled with zeros; a unique-user
count or any ratio over no events has no value, so those are left as gaps (null), which charts draw as
a break instead of a line falling to zero. ``fill=zero|null|none`` overrides the choice per query.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

FILLS = ("auto", "zero", "null", "none")
STEPS = {"minute": 60, "hour": 3600}


class BadTimeZone(ValueError):
    """``tz`` is not an IANA time zone name."""


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (e.g. ``America/New_York``); aliases of UTC normalise to ``UTC``."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise BadTimeZone(f"tz {name!r} is not an IANA time zone name such as UTC or America/New_York")
    try:
        found = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadTimeZone(f"unknown time zone {name!r}: use an IANA name such as UTC, Europe/Berlin or "
                          "America/New_York") from None
    if name not in available_timezones() and name != "UTC":
        raise BadTimeZone(f"unknown time zone {name!r}: use an IANA name such as UTC or America/New_York")
    return found


def is_utc(tz: str) -> bool:
    return tz in ("UTC", "Etc/UTC", "Etc/UCT", "UCT", "Universal", "Zulu", "Etc/Zulu", "GMT", "Etc/GMT")


def floor_local_day(moment: datetime, tz: str) -> datetime:
    """The start (UTC) of the calendar day of ``tz`` that ``moment`` falls in."""
    local = moment.astimezone(zone(tz))
    return datetime(local.year, local.month, local.day, tzinfo=zone(tz)).astimezone(UTC)


def next_local_day(day_start: datetime, tz: str) -> datetime:
    """The start (UTC) of the day after the local day starting at ``day_start``."""
    local = day_start.astimezone(zone(tz)).date() + timedelta(days=1)
    return datetime(local.year, local.month, local.day, tzinfo=zone(tz)).astimezone(UTC)


def floor_bucket(moment: datetime, granularity: str, tz: str) -> datetime:
    if granularity == "day":
        return floor_local_day(moment, tz)
    step = STEPS[granularity]
    return datetime.fromtimestamp(int(moment.timestamp()) // step * step, UTC)


def bucket_starts(start: datetime, end: datetime, granularity: str, tz: str) -> list[int]:
    """Every bucket of ``[start, end)`` (``start`` on a boundary), as epoch seconds."""
    if granularity == "day":
        out, at = [], floor_local_day(start, tz)
        while at < end:
            out.append(int(at.timestamp()))
            at = next_local_day(at, tz)
        return out
    step = STEPS[granularity]
    first = int(floor_bucket(start, granularity, tz).timestamp())
    return list(range(first, math.ceil(end.timestamp()), step))


def empty_value(metric_measure: str, fill: str) -> Any:
    """What an empty bucket shows for a metric of ``metric_measure`` (events, revenue, users)."""
    if fill == "zero" or (fill == "auto" and metric_measure != "users"):
        return 0.0 if metric_measure == "revenue" else 0
    return None
