"""The component tier's data: synthetic events laid into the hot store and the lake, and the truth.

Recent events go into the hot tier the way the stream writes them (raw events, and their 1-minute
partial rollups into ``rollups_1m_ingest``, which the materialized views turn into the minute and hour
rollups). Older events become the lake's rollup files in the layout the batch layer writes: warm hourly
rollups for ages under a year, cold daily rollups for every complete day. The truth is computed here
from the event dicts themselves, never through the code under test.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from common import day_rollups
from common.events import EVENT_ARROW_SCHEMA
from common.hot_store import HotStore
from common.rollups import minute_rollups
from common.settings import Settings

KEYS = ("tenant", "event", "country", "device", "page")
EVENTS = ("page_view", "page_view", "page_view", "click", "purchase", "signup")
COUNTRIES = ("US", "DE", "FR", "JP")
DEVICES = ("mobile", "desktop")
PAGES = ("/", "/pricing", "/docs", "/checkout")
HOT_AGES_MINUTES = (2, 3, 7, 12, 20, 31, 44, 58, 90, 200, 600, 1500, 2500)  # inside the hot tier
LAKE_AGES_DAYS = (100, 150, 220, 300, 400, 555, 800, 1000)  # warm (< 365 days) and cold


@dataclass(frozen=True)
class Seeded:
    now: datetime  # when the data was laid: every hot event is before it
    hot: list[dict[str, Any]]
    lake: list[dict[str, Any]]

    @property
    def all(self) -> list[dict[str, Any]]:
        return self.hot + self.lake


def _event(rng: random.Random, tenant: str, at: datetime) -> dict[str, Any]:
    name = rng.choice(EVENTS)
    return {
        "tenant": tenant, "event": name, "timestamp": at, "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "user_id": f"u{rng.randint(1, 30)}", "page": rng.choice(PAGES), "country": rng.choice(COUNTRIES),
        "device": rng.choice(DEVICES), "revenue": float(rng.randint(1, 80)) / 4 if name == "purchase" else 0.0,
        "properties": "", "received_at": at,
    }


def synthetic(tenant: str, now: datetime, seed: int) -> Seeded:
    """A few events a minute apart at each age; ``now`` is floored to the second like stored times."""
    rng = random.Random(seed)
    now = now.replace(microsecond=0)
    hot = [_event(rng, tenant, now - timedelta(minutes=age, seconds=rng.randint(0, 50)))
           for age in HOT_AGES_MINUTES for _ in range(rng.randint(3, 9))]
    lake = [_event(rng, tenant, (now - timedelta(days=age)).replace(hour=rng.randint(0, 23), minute=rng.randint(0, 59)))
            for age in LAKE_AGES_DAYS for _ in range(rng.randint(4, 12))]
    return Seeded(now, hot, lake)


def lay_hot(hot: HotStore, events: list[dict[str, Any]]) -> None:
    """As the stream job writes a micro-batch: raw events, then their minute rollups (exactly once)."""
    table = pa.Table.from_pylist(events, schema=EVENT_ARROW_SCHEMA)
    token = uuid.uuid4().hex
    hot.insert_arrow("events_raw", table, token=f"{token}:raw")
    hot.insert_arrow("rollups_1m_ingest", minute_rollups(table), token=f"{token}:rollups")
    day_rollups.written(hot, [e["timestamp"] for e in events])  # a day copy of these hours is read no more


def lay_lake(settings: Settings, events: list[dict[str, Any]], now: datetime) -> None:
    """Warm hourly rollups for events younger than a year; cold daily rollups for every complete day."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    _write_warm(settings, [e for e in events if e["timestamp"] >= now - timedelta(days=365)])
    _write_daily(settings, [e for e in events if e["timestamp"] < today])


def lay_warm(settings: Settings, events: list[dict[str, Any]]) -> None:
    """Only the warm hourly rollups (the lake on MinIO has no local folder for the cold files)."""
    _write_warm(settings, events)


def _write_warm(settings: Settings, events: list[dict[str, Any]]) -> None:
    """The warm hourly rollups appended to their Delta table in one commit."""
    from common.lake_tables import ROLLUPS_HOURLY_SCHEMA, ROLLUPS_HOURLY_TABLE, append_rows

    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        groups[(floor(e["timestamp"], "hour"), *(e[k] for k in KEYS))].append(e)
    rows = [{**dict(zip(KEYS, key, strict=True)), "hour": at, "events": len(members),
             "revenue": sum(e["revenue"] for e in members), "user_ids": sorted({e["user_id"] for e in members}),
             "dt": at.date(), "hour_of_day": at.hour} for (at, *key), members in groups.items()]
    if rows:
        schema = ROLLUPS_HOURLY_SCHEMA.append(pa.field("dt", pa.date32())).append(pa.field("hour_of_day", pa.int32()))
        append_rows(settings, ROLLUPS_HOURLY_TABLE, pa.Table.from_pylist(rows, schema=schema), "test", {})


def _write_daily(settings: Settings, events: list[dict[str, Any]]) -> None:
    """The cold daily rollups appended to their Delta table in one commit."""
    from common.lake_tables import COLD_ROLLUPS_DAILY_TABLE, append_rows
    from storage_tiers.tiers.cold_files import DAILY_SCHEMA

    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        groups[(floor(e["timestamp"], "day"), *(e[k] for k in KEYS))].append(e)
    rows = [{**dict(zip(KEYS, key, strict=True)), "day": at, "events": len(members),
             "revenue": sum(e["revenue"] for e in members), "user_ids": sorted({e["user_id"] for e in members}),
             "dt": at.date()} for (at, *key), members in groups.items()]
    if rows:
        schema = DAILY_SCHEMA.append(pa.field("dt", pa.date32()))
        append_rows(settings, COLD_ROLLUPS_DAILY_TABLE, pa.Table.from_pylist(rows, schema=schema), "test", {})


# ------------------------------------------------------------------------------------------ truth


def floor(at: datetime, unit: str) -> datetime:
    if unit == "minute":
        return at.replace(second=0, microsecond=0)
    if unit == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


METRIC_VALUES: dict[str, Callable[[list[dict[str, Any]]], float]] = {
    "events": len,
    "page_views": lambda es: sum(e["event"] == "page_view" for e in es),
    "clicks": lambda es: sum(e["event"] == "click" for e in es),
    "purchases": lambda es: sum(e["event"] == "purchase" for e in es),
    "signups": lambda es: sum(e["event"] == "signup" for e in es),
    "revenue": lambda es: sum(e["revenue"] for e in es),
    "unique_users": lambda es: len({e["user_id"] for e in es}),
}


def within(events: Iterable[dict[str, Any]], start: datetime, end: datetime,
           **equals: str) -> list[dict[str, Any]]:
    """The events in ``[start, end)`` whose dimensions equal ``equals`` (e.g. ``country="US"``)."""
    return [e for e in events if start <= e["timestamp"] < end and all(e[k] == v for k, v in equals.items())]


def total(events: list[dict[str, Any]], metric: str) -> float:
    return METRIC_VALUES[metric](events)


def by_dimension(events: list[dict[str, Any]], dimension: str, metric: str) -> dict[str, float]:
    """The metric per value of ``dimension`` (every value seen in ``events``, 0 included)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        groups[e[dimension]].append(e)
    return {value: total(members, metric) for value, members in groups.items()}


def by_bucket(events: list[dict[str, Any]], unit: str, metric: str, tz: str = "UTC") -> dict[str, float]:
    """The metric per ``unit`` bucket, keyed like the API's buckets (ISO-8601, ``Z``); days are the
    calendar days of ``tz`` (each event's local date, its midnight in that zone)."""
    groups: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if unit == "day":
            local = e["timestamp"].astimezone(ZoneInfo(tz))
            groups[datetime(local.year, local.month, local.day, tzinfo=ZoneInfo(tz))].append(e)
        else:
            groups[floor(e["timestamp"], unit)].append(e)
    return {iso(at): total(members, metric) for at, members in sorted(groups.items())}


def every_bucket(start: datetime, end: datetime, unit: str, tz: str = "UTC") -> list[str]:
    """Every bucket starting in ``[start, end)``, ``start`` on a boundary (days: each local date's midnight)."""
    out = []
    if unit == "day":
        day = start.astimezone(ZoneInfo(tz)).date()
        while (at := datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))) < end:
            out.append(iso(at))
            day += timedelta(days=1)
        return out
    at = start
    while at < end:
        out.append(iso(at))
        at += timedelta(minutes=1) if unit == "minute" else timedelta(hours=1)
    return out


def zero_filled(truth: dict[str, float], buckets: list[str], empty: float | None = 0) -> dict[str, float | None]:
    """``truth`` with every bucket of ``buckets`` present, the missing ones as ``empty``."""
    return {b: truth.get(b, empty) for b in buckets}


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
