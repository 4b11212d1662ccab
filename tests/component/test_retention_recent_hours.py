"""Auto-routed retention counts the hours the archive has not reached yet, once each.

The lake (a temporary archive of its own) holds every hour before ``cutoff``; the in-process hot tier holds the
last six days, the archived hours included, as it normally does. Users whose first-ever start event lies after
the cutoff, returns after it, an old user (lake only) coming back after it: the grid DuckDB computes over the
lake's rows plus the hot tier's rows of the later hours equals ``tests/analytics_truth.py`` over all events.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
import pytest

import tests.analytics_truth as truth
from common.hot_store import HotStore
from common.settings import Settings
from serving.analytics import definitions as defs
from serving.analytics.engine import AnalyticsEngine
from storage_tiers.lake.sql import lake_connection, lake_events_end
from tests.analytics_clickstream import Clickstream, clickstream, lay_hot, lay_lake

TENANT = "recent-retain-co"
QUESTION = {"start_event": "page_view", "return_event": "page_view", "period": "day", "periods": 7}


@pytest.fixture(scope="module")
def laid(tmp_path_factory: pytest.TempPathFactory, hot: HotStore) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("recent-retention-home")
    settings = Settings(home=home, lake_uri=str(home / "lake"), session_gap_minutes=30)
    now = datetime.now(UTC).replace(microsecond=0)
    cutoff = now.replace(minute=0, second=0) - timedelta(hours=2)  # the archive holds the hours before it
    events = [e for e in clickstream(TENANT, "r", now - timedelta(days=6), 6, seed=21).events if e["timestamp"] < now]
    hand = Clickstream(TENANT, "x")
    hand.add("fresh", "page_view", cutoff + timedelta(minutes=5))  # first-ever start only in the hot tier
    hand.add("fresh", "page_view", now - timedelta(minutes=1))
    hand.add("back", "page_view", cutoff - timedelta(days=3), device="ios")  # returns after the cutoff
    hand.add("back", "page_view", cutoff + timedelta(minutes=30), device="ios")
    hand.add("edge", "page_view", cutoff - timedelta(days=2, milliseconds=1))
    hand.add("edge", "page_view", cutoff)  # the first instant the lake does not hold
    hand.add("twice", "page_view", cutoff - timedelta(days=1))
    hand.add("twice", "page_view", cutoff - timedelta(minutes=30))  # an hour archived and still in the hot tier
    events += [e for e in hand.events if e["timestamp"] < now]
    veteran = Clickstream(TENANT, "v")  # first seen 30 days ago: only the lake knows, so no new cohort today
    veteran.add("old", "page_view", now - timedelta(days=30), device="ios")
    veteran.add("old", "page_view", cutoff + timedelta(minutes=10), device="ios")
    lay_hot(hot, events + veteran.events[1:])
    lay_lake(settings, [e for e in events + veteran.events if e["timestamp"] < cutoff], TENANT)
    assert lake_events_end(settings) == cutoff
    start = (now - timedelta(days=6)).replace(hour=0, minute=0, second=0)
    return {"settings": settings, "now": now, "cutoff": cutoff, "events": events + veteran.events,
            "range": (start, now.replace(hour=0, minute=0, second=0) + timedelta(days=1))}


def _grid(body: dict[str, Any]) -> dict[tuple, list[int]]:
    return {(c["cohort"], c.get("value")): c["counts"] for c in body["cohorts"]}


def _truth(events: list[dict[str, Any]], laid: dict[str, Any], question: dict[str, Any]) -> dict[tuple, list[int]]:
    start, end = laid["range"]
    return {(k[0].date().isoformat(), k[1]): v for k, v in truth.retention(events, start, end, **question).items()}


@pytest.mark.parametrize("mode", ["on", "on_or_after"])
@pytest.mark.parametrize("breakdown", [None, "device"])
def test_hours_not_archived_yet_come_from_the_hot_tier(hot: HotStore, laid, mode, breakdown):
    question = {**QUESTION, "mode": mode, "breakdown": breakdown}
    engine = AnalyticsEngine(hot, laid["settings"])
    got = engine.retention(TENANT, defs.retention_spec(question, *laid["range"]), laid["now"])
    assert got.sources == ["lake:events", "hot:events_raw"]
    expected = _truth(laid["events"], laid, question)
    assert _grid(got.body) == expected
    fresh = (laid["cutoff"] + timedelta(minutes=5)).date().isoformat()  # yesterday's in the first two hours of a day
    assert any(cohort == fresh and counts[0] >= 1 for (cohort, _), counts in expected.items()), "a fresh cohort"
    back = laid["cutoff"].date() - (laid["cutoff"] - timedelta(days=3)).date()
    assert sum(counts[back.days] for (cohort, _), counts in expected.items()
               if cohort == (laid["cutoff"] - timedelta(days=3)).date().isoformat()) >= 1, "a return after the cutoff"


def test_forced_lake_reads_the_lake_alone(hot: HotStore, laid):
    engine = AnalyticsEngine(hot, laid["settings"])
    got = engine.retention(TENANT, defs.retention_spec({**QUESTION, "tier": "lake"}, *laid["range"]), laid["now"])
    assert got.sources == ["lake:events"]
    archived = [e for e in laid["events"] if e["timestamp"] < laid["cutoff"]]
    assert _grid(got.body) == _truth(archived, laid, QUESTION) != _truth(laid["events"], laid, QUESTION)


class _Recording:
    """A lake session that keeps the Arrow tables handed to it and the event ids of the rows the retention query
    picks (its first CTE, lake and hot tier together: duplicates could not change a grid of distinct users, so
    they are looked for here)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, seen: dict[str, Any]) -> None:
        self.con, self.seen = con, seen

    def register(self, name: str, table: pa.Table) -> None:
        self.seen[name] = table
        self.con.register(name, table)

    def execute(self, sql: str, params: dict[str, Any]) -> duckdb.DuckDBPyConnection:
        picked = sql.split("\n),\nfirsts AS (")[0] + "\n) SELECT event_id FROM picked"
        used = {k: v for k, v in params.items() if k in set(re.findall(r"\$(\w+)", picked))}
        self.seen["picked"] = [row[0] for row in self.con.execute(picked, used).fetchall()]
        return self.con.execute(sql, params)

    def close(self) -> None:
        self.con.close()


def test_an_hour_archived_while_reading_is_taken_once_from_the_hot_tier(hot: HotStore, laid):
    """The boundary read says the lake ends an hour before it really does (the hour was archived meanwhile): the
    lake's rows of that hour are left out, the hot tier's are taken, exactly the events from the boundary on."""
    seen: dict[str, Any] = {}
    boundary = laid["cutoff"] - timedelta(hours=1)
    engine = AnalyticsEngine(hot, laid["settings"], lake_end=lambda _settings: boundary,
                             lake_factory=lambda s: _Recording(lake_connection(s), seen))  # type: ignore[arg-type]
    got = engine.retention(TENANT, defs.retention_spec(QUESTION, *laid["range"]), laid["now"])
    assert _grid(got.body) == _truth(laid["events"], laid, QUESTION)
    assert sorted(seen["recent_events"]["event_id"].to_pylist()) == sorted(
        e["event_id"] for e in laid["events"] if e["timestamp"] >= boundary and e["event"] == "page_view")
    assert sorted(seen["picked"]) == sorted(e["event_id"] for e in laid["events"] if e["event"] == "page_view")


def test_a_scan_ending_before_the_hot_tier_reads_the_lake_alone(hot: HotStore, laid):
    engine = AnalyticsEngine(hot, laid["settings"], lake_end=lambda _settings: pytest.fail("no boundary needed"))
    start = laid["now"] - timedelta(days=40)
    spec = defs.retention_spec(QUESTION, start, start + timedelta(days=5))
    assert engine.retention(TENANT, spec, laid["now"]).sources == ["lake:events"]
