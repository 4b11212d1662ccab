"""Which tier answers which part of a range.

The hot tier (ClickHouse) keeps 1-minute rollups for its first horizon and hourly rollups for its
second; the warm tier keeps hourly rollups in Parquet for a year; the cold tier keeps daily rollups
for seven years. A range is cut at those horizons, each cut aligned to the answer's buckets (a bucket
is never split between tiers, so each bucket's numbers, unique users included, come from one
engine), and each piece is sent to the cheapest tier that holds it.

Day buckets in a zone other than UTC (``tz=America/New_York``) are calendar days of that zone. The
lake's daily rollups are UTC days, so they cannot answer them: such a series is answered from hourly
rows (the hot tier's, then the warm tier's, a year back), with cuts on the zone's midnights. Beyond the
warm tier's year only UTC days exist; that piece is answered from them, each UTC day standing for the
local day of the same date, and the answer flags every metric ``approximate``. (Zones whose offset is
not a whole hour, e.g. Asia/Kolkata, see each hourly row in the day it starts in: within 30 minutes.)

Day sketches (``plan(..., day_sketches=True)``, the setting ``LAKEHOUSE_QUERY_DAY_SKETCHES``): a question the
lake's day sketches can answer (``sketchable``: events, revenue and unique users, at most one of the sketched
dimensions, in UTC day buckets or as totals) reads them for everything past the hot tier's hourly horizon,
in place of the daily rollups (day buckets) or of the warm hourly rollups and the daily rollups (totals): one
row per day and value instead of 24 files a day of rows keyed by every dimension.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from serving.query.buckets import floor_local_day, next_local_day
from serving.query.spec import GRANULARITIES, METRICS, QueryError, QuerySpec
from storage_tiers.policy import TierPolicy
from storage_tiers.tiers.day_sketches import PRECISIONS


@dataclass(frozen=True)
class Horizons:
    """How far back each rollup is kept where (defaults as in storage_tiers/tiers.yaml; a policy file may differ)."""

    hot_minute: timedelta = timedelta(days=7)
    hot_hour: timedelta = timedelta(days=90)
    warm_hour: timedelta = timedelta(days=365)


def horizons_from_policy(policy: TierPolicy) -> Horizons:
    """The routing horizons the tier policy file sets (storage_tiers/tiers.yaml)."""
    default = Horizons()
    return Horizons(
        hot_minute=policy.horizon("rollups_1m", "hot") or default.hot_minute,
        hot_hour=policy.horizon("rollups_hourly", "hot") or default.hot_hour,
        warm_hour=policy.horizon("rollups_hourly", "warm") or default.warm_hour,
    )


@dataclass(frozen=True)
class Source:
    tier: str  # hot | warm | cold
    table: str  # rollups_1m, rollups_1h (ClickHouse); rollups_hourly, rollups_daily (DuckDB views)
    time_column: str
    step: int  # seconds of one row's time unit: an answer cannot be finer


SOURCES = {
    "rollups_1m": Source("hot", "rollups_1m", "minute", 60),
    "rollups_1h": Source("hot", "rollups_1h", "hour", 3600),
    "rollups_hourly": Source("warm", "rollups_hourly", "hour", 3600),
    "rollups_daily": Source("cold", "rollups_daily", "day", 86400),
    "day_sketches": Source("cold", "day_sketches", "day", 86400),
}
SKETCHED_MEASURES = ("events", "revenue", "users")
FORCED = {"hot": ("rollups_1m", "rollups_1h"), "warm": ("rollups_hourly",), "cold": ("rollups_daily",)}


@dataclass(frozen=True)
class Segment:
    source: Source
    start: datetime
    end: datetime


def _floor(moment: datetime, step: int) -> datetime:
    seconds = int(moment.timestamp())
    return datetime.fromtimestamp(seconds - seconds % step, UTC)


def _ceil(moment: datetime, step: int) -> datetime:
    floored = _floor(moment, step)
    return floored if floored == moment else floored + timedelta(seconds=step)


def sketch_dimension(spec: QuerySpec) -> str | None:
    """The dimension whose day sketches answer ``spec`` ("" for the tenant's whole days), or None when they cannot:
    catalogue metrics without an event condition, at most one dimension grouped or filtered on, a sketched one,
    UTC day buckets or none."""
    if spec.granularity not in (None, "day") or spec.local_days:
        return None
    if any(METRICS[m].event is not None or METRICS[m].measure not in SKETCHED_MEASURES for m in spec.metrics):
        return None
    fields = set(spec.dimensions) | {f.field for f in spec.filters if not f.on_metric}
    if len(fields) > 1 or not fields <= set(PRECISIONS):
        return None
    return next(iter(fields), "")


def plan(spec: QuerySpec, now: datetime, horizons: Horizons, *, day_sketches: bool = False) -> list[Segment]:
    """The pieces of ``spec``'s range and the source of each, oldest first (``day_sketches``: see the module's
    docstring)."""
    bucket = GRANULARITIES[spec.granularity] if spec.granularity else 0
    if spec.tier != "auto":
        return [_forced(spec, bucket)]
    # (oldest instant a source holds, source), newest source first
    ladder = [
        (now - horizons.hot_minute, SOURCES["rollups_1m"]),
        (now - horizons.hot_hour, SOURCES["rollups_1h"]),
        (now - horizons.warm_hour, SOURCES["rollups_hourly"]),
        (datetime.min.replace(tzinfo=UTC), SOURCES["rollups_daily"]),
    ]
    if bucket != 60:
        ladder = ladder[1:]  # hourly rollups answer everything coarser than a minute inside 90 days
    if bucket >= 86400 and not spec.local_days:
        # day buckets past the hot tier: the daily rollups, built for every complete day, read one file
        # per day where the warm hourly rollups read 24 (a 1-year series: 365 files instead of 8,760)
        ladder = [ladder[0], ladder[2]]
    if day_sketches and bucket in (0, 86400) and sketch_dimension(spec) is not None:
        ladder = [ladder[0], (ladder[-1][0], SOURCES["day_sketches"])]
    segments: list[Segment] = []
    end = spec.end
    reach = timedelta(0)
    for i, (oldest, source) in enumerate(ladder):
        if end <= spec.start:
            break
        if bucket and bucket < source.step:
            raise QueryError(
                f"{spec.granularity} buckets reach back {reach.days} days; ask for a coarser granularity "
                "for older ranges"
            )
        # a cut falls on a boundary of both neighbours' rows (and of the buckets): no row is read twice
        older_step = ladder[i + 1][1].step if i + 1 < len(ladder) else source.step
        if spec.local_days and older_step < 86400:  # a local day never split: cut on the zone's midnight
            day = floor_local_day(max(oldest, spec.start), spec.tz)
            cut = day if day == max(oldest, spec.start) else next_local_day(day, spec.tz)
            cut = _floor(max(spec.start, cut), source.step)
        else:
            cut = _floor(max(spec.start, _ceil(oldest, max(bucket, source.step, older_step))), source.step)
        if cut < end:
            segments.append(Segment(source, cut, end))
            end = cut
        reach = now - oldest
    return list(reversed(segments))


def _forced(spec: QuerySpec, bucket: int) -> Segment:
    for name in FORCED[spec.tier]:
        source = SOURCES[name]
        if not bucket or bucket >= source.step:
            return Segment(source, _floor(spec.start, source.step), spec.end)
    raise QueryError(f"the {spec.tier} tier has no {spec.granularity} buckets")
