"""Dashboard answers are the same whichever tier holds the data (cross-tier equality).

A sparse history over almost seven years is laid into every tier the way the pipeline leaves it: the
hot tier's rollups (inserted through the hot node) for the last 90 days, the warm hourly rollups for
the last year, and the cold daily rollups for every complete day. Then 7-day, 90-day, 1-year and
7-year questions go through the API, routed automatically and forced onto single tiers, and every
answer is compared with a ground truth computed here from the raw events.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyarrow as pa
import pytest

from common import day_rollups
from common.hot_store import HotStore
from common.lake_tables import COLD_ROLLUPS_DAILY_TABLE, ROLLUPS_HOURLY_SCHEMA, ROLLUPS_HOURLY_TABLE, append_rows
from common.rollups import ROLLUP_SCHEMA
from common.settings import Settings
from storage_tiers.tiers.cold_files import DAILY_SCHEMA

pytestmark = pytest.mark.integration

AGES_DAYS = [2, 3, 5, 6, 12, 40, 88, 89.6, 91, 150, 300, 363, 366, 500, 900, 1500, 2100, 2500]
COUNTRIES = ["US", "DE", "FR"]
KEYS = ("tenant", "event", "country", "device", "page")


def synthetic_history(tenant: str, now: datetime) -> list[dict[str, Any]]:
    rng = random.Random(7)
    events = []
    for age in AGES_DAYS:
        day_start = now - timedelta(days=age)
        for _ in range(rng.randint(20, 60)):
            event = rng.choice(["page_view", "page_view", "click", "purchase"])
            events.append({
                "tenant": tenant,
                "event": event,
                "timestamp": (day_start + timedelta(minutes=rng.randint(0, 300))).replace(second=0, microsecond=0),
                "country": rng.choice(COUNTRIES),
                "device": rng.choice(["mobile", "desktop"]),
                "page": f"/p{rng.randint(1, 4)}",
                "user_id": f"u{rng.randint(1, 40)}",
                "revenue": float(rng.randint(1, 40)) / 2 if event == "purchase" else None,
            })
    return events


def _rollup(events: list[dict[str, Any]], unit: str) -> dict[tuple, dict[str, Any]]:
    """Rows of a rollup keyed by (time unit, dimensions...): counts, revenue and distinct users."""
    out: dict[tuple, dict[str, Any]] = {}
    for e in events:
        ts = e["timestamp"]
        at = {"minute": ts.replace(second=0), "hour": ts.replace(minute=0, second=0),
              "day": ts.replace(hour=0, minute=0, second=0)}[unit]
        row = out.setdefault((at, *(e[k] for k in KEYS)), {"events": 0, "revenue": None, "users": set()})
        row["events"] += 1
        if e["revenue"] is not None:
            row["revenue"] = (row["revenue"] or 0.0) + e["revenue"]
        row["users"].add(e["user_id"])
    return out


def _lay_hot(hot: HotStore, events: list[dict[str, Any]]) -> None:
    rows = [{"minute": at, **dict(zip(KEYS, key, strict=True)), "events": r["events"], "revenue": r["revenue"] or 0.0,
             "user_ids": sorted(r["users"])} for (at, *key), r in _rollup(events, "minute").items()]
    hot.insert_arrow("rollups_1m_ingest", pa.Table.from_pylist(rows).select(ROLLUP_SCHEMA.names).cast(ROLLUP_SCHEMA))
    # as the stream does: a day copy built earlier in the session (another test's restatement) is read no more
    day_rollups.written(hot, sorted({r["minute"] for r in rows}))


def _lay_warm(settings: Settings, events: list[dict[str, Any]], tenant: str) -> None:
    """The tenant's hourly rollups appended to the warm Delta table (one commit; other tests' rows stay)."""
    rows = [{**dict(zip(KEYS, key, strict=True)), "hour": at, "events": r["events"], "revenue": r["revenue"],
             "user_ids": sorted(r["users"]), "dt": at.date(), "hour_of_day": at.hour}
            for (at, *key), r in _rollup(events, "hour").items()]
    schema = ROLLUPS_HOURLY_SCHEMA.append(pa.field("dt", pa.date32())).append(pa.field("hour_of_day", pa.int32()))
    append_rows(settings, ROLLUPS_HOURLY_TABLE, pa.Table.from_pylist(rows, schema=schema), "test",
                {"tenant": tenant})


def _lay_daily(settings: Settings, events: list[dict[str, Any]], tenant: str) -> None:
    """The tenant's daily rollups appended to the cold daily rollups' Delta table (one commit; other tests' rows
    stay)."""
    rows = [{**dict(zip(KEYS, key, strict=True)), "day": at, "events": r["events"], "revenue": r["revenue"],
             "user_ids": sorted(r["users"]), "dt": at.date()} for (at, *key), r in _rollup(events, "day").items()]
    schema = DAILY_SCHEMA.append(pa.field("dt", pa.date32()))
    append_rows(settings, COLD_ROLLUPS_DAILY_TABLE, pa.Table.from_pylist(rows, schema=schema), "test",
                {"tenant": tenant})


def _truth_by_day(events: list[dict[str, Any]], start: datetime, end: datetime) -> dict[str, list]:
    days: dict[str, list] = {}
    for (day, *_), r in _rollup([e for e in events if start <= e["timestamp"] < end], "day").items():
        entry = days.setdefault(day.isoformat().replace("+00:00", "Z"), [0, 0.0, set()])
        entry[0] += r["events"]
        entry[1] += r["revenue"] or 0.0
        entry[2] |= r["users"]
    return {day: [n, revenue, len(users)] for day, (n, revenue, users) in sorted(days.items())}


@pytest.fixture(scope="module")
def history(settings: Settings, hot: HotStore) -> tuple[str, datetime, list[dict[str, Any]]]:
    tenant = "tier-routing"
    now = datetime.now(UTC)
    events = synthetic_history(tenant, now)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    _lay_hot(hot, [e for e in events if e["timestamp"] >= now - timedelta(days=90)])
    _lay_warm(settings, [e for e in events if e["timestamp"] >= now - timedelta(days=365)], tenant)
    _lay_daily(settings, [e for e in events if e["timestamp"] < today], tenant)
    return tenant, now, events


def _daily(api: httpx.Client, tenant: str, range_: str, tier: str) -> dict[str, Any]:
    response = api.post("/v1/query", params={"tenant": tenant}, json={
        "metrics": ["events", "revenue", "unique_users"], "range": range_, "granularity": "day", "tier": tier})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(("range_", "days", "tiers"), [
    ("7d", 7, ["auto", "hot", "warm", "cold"]),
    ("90d", 90, ["auto", "warm", "cold"]),
    ("1y", 365, ["auto", "cold"]),
    ("7y", 7 * 365, ["auto", "cold"]),
])
def test_every_tier_gives_the_ground_truth_for_7d_90d_1y_and_7y(api, history, range_, days, tiers):
    tenant, now, events = history
    answers = {tier: _daily(api, tenant, range_, tier) for tier in tiers}
    start = datetime.fromisoformat(answers["auto"]["from"])
    assert start == (now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    truth = _truth_by_day(events, start, now)
    assert truth, "the range must hold data for the comparison to mean something"
    for tier, body in answers.items():
        got = {day: values for day, *values in body["rows"]}
        assert got == truth, f"{range_} answered by tier {tier} ({body['sources']}) differs from the ground truth"
    assert answers["cold"]["sources"] == ["cold:rollups_daily"]
    if range_ == "7y":
        assert answers["auto"]["sources"] == ["cold:rollups_daily", "hot:rollups_1h"]


def test_totals_over_a_split_range_add_the_tiers_and_flag_unique_users(api, history):
    tenant, now, events = history
    body = api.post("/v1/query", params={"tenant": tenant}, json={
        "metrics": ["events", "revenue", "purchases"], "dimensions": ["country"], "range": "7y"}).json()
    assert body["sources"] == ["cold:rollups_daily", "warm:rollups_hourly", "hot:rollups_1h"]
    start = datetime.fromisoformat(body["read_from"])  # the first (daily) row is read whole
    window = [e for e in events if start <= e["timestamp"] < now]
    truth = {c: [sum(e["country"] == c for e in window),
                 sum(e["revenue"] or 0.0 for e in window if e["country"] == c),
                 sum(e["country"] == c and e["event"] == "purchase" for e in window)] for c in COUNTRIES}
    assert {country: values for country, *values in body["rows"]} == truth
    users = api.post("/v1/query", params={"tenant": tenant},
                     json={"metrics": ["unique_users"], "range": "7y"}).json()
    assert users["approximate"] == ["unique_users"]
    assert users["rows"][0][0] >= len({e["user_id"] for e in window})
