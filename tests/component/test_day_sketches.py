"""Long ranges from the lake's day sketches, over a temporary lake (no services, no hot tier).

Two tenants' synthetic events on days spread over two and a half years become daily rollups (one commit per day,
as the tier mover writes them) and day sketches (``build_day_sketches``, what the mover runs next). The truth is
computed here from the events themselves: events and revenue must be exact, unique users per day exact, and
unique users over many days within the error bound the answer states, against an exact Python count. Also: the
router picks the day sketches for long ranges only when the setting is on and the question fits; the mover
writes them; a retention purge leaves them as a rebuild from the purged daily rollups would.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from common.lake_tables import COLD_ROLLUPS_DAILY_TABLE, DAY_SKETCHES_TABLE
from common.settings import Settings
from common.sketches import relative_error_bound
from serving.query.engine import QueryEngine
from serving.query.spec import Filter, Order, QuerySpec
from serving.query.tier_routing import Horizons, plan
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.compliance.holds import place_hold
from storage_tiers.lake.reader import LakeRollupReader
from storage_tiers.lake.sql import lake_query
from storage_tiers.policy import load_policy
from storage_tiers.tiers.cold_files import DAILY_SCHEMA, ROLLUP_KEYS, publish_day, published, read_day
from storage_tiers.tiers.day_sketches import PRECISIONS, build_day_sketches, is_current, sketch_rows
from storage_tiers.tiers.purge import Purger

FIRST = date(2024, 1, 3)
DAYS = [FIRST + timedelta(days=k * 23) for k in range(40)]  # 40 days over ~2.5 years
NOW = datetime.combine(DAYS[-1] + timedelta(days=2), datetime.min.time(), UTC)
COUNTRIES = ("US", "DE", "FR", "BR", None)  # a missing country is stored (and answered) as ""
EVENTS = ("page_view", "click", "purchase")
LAKE_ONLY = Horizons(hot_minute=timedelta(0), hot_hour=timedelta(0), warm_hour=timedelta(days=365))


def _events(day: date, tenant: str, rng: random.Random, pool: int, n: int) -> list[dict[str, Any]]:
    start = datetime.combine(day, datetime.min.time(), UTC)
    out = []
    for _ in range(n):
        event = rng.choice(EVENTS)
        out.append({"tenant": tenant, "event": event, "country": rng.choice(COUNTRIES),
                    "device": rng.choice(("mobile", "desktop")), "page": f"/p{rng.randint(1, 6)}",
                    "at": start + timedelta(seconds=rng.randint(0, 86_399)),
                    "user_id": f"{tenant}-u{int(pool * rng.random() ** 2)}",
                    "revenue": round(rng.uniform(1, 90), 2) if event == "purchase" else 0.0})
    return out


def _daily_rollups(events: list[dict[str, Any]], day: date) -> pa.Table:
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        groups[tuple(e[k] for k in ROLLUP_KEYS)].append(e)
    rows = [{**dict(zip(ROLLUP_KEYS, key, strict=True)), "day": datetime.combine(day, datetime.min.time(), UTC),
             "events": len(members), "revenue": sum(e["revenue"] for e in members),
             "user_ids": sorted({e["user_id"] for e in members}, key=lambda u: (u is None, u or ""))}
            for key, members in groups.items()]
    return pa.Table.from_pylist(rows, schema=DAILY_SCHEMA)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[dict[str, Any]]]:
    home = tmp_path_factory.mktemp("day-sketches")
    settings = Settings(home=home, lake_uri=str(home / "lake"), tier_policy="", lake_session_seconds=0)
    rng = random.Random(16)
    everything = []
    for day in DAYS:
        events = _events(day, "acme", rng, 6_000, 2_500) + _events(day, "beta", rng, 300, 200)
        everything += events
        publish_day(settings, COLD_ROLLUPS_DAILY_TABLE, day, _daily_rollups(events, day), ROLLUP_KEYS, [], {}, "t")
        assert build_day_sketches(settings, day, "t").built
    return settings, everything


@pytest.fixture(scope="module")
def engines(lake: tuple[Settings, list]) -> Iterator[tuple[QueryEngine, QueryEngine]]:
    reader = LakeRollupReader(lake[0], listing_seconds=0)
    yield (QueryEngine(None, reader, horizons=LAKE_ONLY, day_sketches=True),
           QueryEngine(None, reader, horizons=LAKE_ONLY, day_sketches=False))
    reader.close()


def _spec(**kw: Any) -> QuerySpec:
    base = {"metrics": ("events", "revenue", "unique_users"),
            "start": datetime.combine(FIRST, datetime.min.time(), UTC), "end": NOW}
    return QuerySpec(**(base | kw))


def _truth(events: list[dict[str, Any]]) -> tuple[int, float, int]:
    return len(events), sum(e["revenue"] for e in events), len({e["user_id"] for e in events})


def test_a_long_day_series_equals_the_events_exactly(lake: tuple[Settings, list], engines: tuple) -> None:
    _settings, everything = lake
    new, old = engines
    spec = _spec(granularity="day")
    answer = new.run("acme", spec, NOW)
    assert answer.sources == ["cold:day_sketches"] and answer.approximate == [] and answer.error_bounds == {}
    by_day: dict[int, list] = defaultdict(list)
    for e in everything:
        if e["tenant"] == "acme":
            by_day[int(datetime.combine(e["at"].date(), datetime.min.time(), UTC).timestamp())].append(e)
    got = {row[0]: row[1:] for row in answer.rows}
    assert set(got) == set(by_day)
    for bucket, events in by_day.items():
        n, revenue, users = _truth(events)
        assert got[bucket][0] == n and got[bucket][2] == users
        assert got[bucket][1] == pytest.approx(revenue)
    before = old.run("acme", spec, NOW)
    assert before.sources == ["cold:rollups_daily"]
    assert [r[0::2] for r in before.rows] == [r[0::2] for r in answer.rows], "the same answer as the daily rollups"


@pytest.mark.parametrize("dimension", ["country", "event", "device"])
def test_totals_by_a_dimension_are_exact_for_sums_and_within_the_bound_for_users(
        lake: tuple[Settings, list], engines: tuple, dimension: str) -> None:
    _settings, everything = lake
    new, _old = engines
    answer = new.run("acme", _spec(dimensions=(dimension,), order_by=(Order("events"),)), NOW)
    assert answer.sources == ["cold:day_sketches"]
    assert answer.approximate == ["unique_users"]
    bound = relative_error_bound(PRECISIONS[dimension])
    assert answer.error_bounds["unique_users"]["relative_error"] == bound
    groups: dict[str, list] = defaultdict(list)
    for e in everything:
        if e["tenant"] == "acme":
            groups[e[dimension] or ""].append(e)
    assert [r[0] for r in answer.rows] == sorted(groups, key=lambda g: -len(groups[g])), "ordered by events"
    for value, events, revenue, users in answer.rows:
        n, true_revenue, true_users = _truth(groups[value])
        assert events == n and revenue == pytest.approx(true_revenue)
        assert abs(users - true_users) / true_users <= bound, (value, users, true_users)


def test_a_total_over_filtered_values_merges_their_sketches(lake: tuple[Settings, list], engines: tuple) -> None:
    _settings, everything = lake
    new, _old = engines
    spec = _spec(filters=(Filter("country", "in", ("US", "DE")),), metrics=("events", "unique_users"))
    (events, users), = new.run("acme", spec, NOW).rows
    n, _revenue, true_users = _truth([e for e in everything if e["tenant"] == "acme" and e["country"] in ("US", "DE")])
    assert events == n and abs(users - true_users) / true_users <= relative_error_bound(PRECISIONS["country"])
    small = new.run("beta", _spec(), NOW)  # beta's few users: the merged sketch stays exact
    (n_beta, revenue_beta, users_beta), = small.rows
    assert (n_beta, users_beta) == _truth([e for e in everything if e["tenant"] == "beta"])[0::2]
    assert small.approximate == []


def test_the_router_takes_the_day_sketches_for_long_ranges_that_fit_only() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    year = {"start": now - timedelta(days=365), "end": now}

    def tables(day_sketches: bool = True, **kw: Any) -> list[str]:
        spec = QuerySpec(**({"metrics": ("events", "unique_users")} | year | kw))
        return [s.source.table for s in plan(spec, now, Horizons(), day_sketches=day_sketches)]

    assert tables(granularity="day") == ["day_sketches", "rollups_1h"]
    assert tables(dimensions=("country",)) == ["day_sketches", "rollups_1h"], "totals skip the warm hourly files"
    assert tables(day_sketches=False, dimensions=("country",)) == ["rollups_daily", "rollups_hourly", "rollups_1h"]
    assert tables(day_sketches=False, granularity="day") == ["rollups_daily", "rollups_1h"]
    assert tables(dimensions=("page",)) == ["rollups_daily", "rollups_hourly", "rollups_1h"], "pages: not sketched"
    assert tables(metrics=("purchases",), granularity="day") == ["rollups_daily", "rollups_1h"]
    assert tables(dimensions=("country",), filters=(Filter("device", "=", ("mobile",)),))[0] == "rollups_daily"
    assert tables(granularity="hour", start=now - timedelta(days=200)) == ["rollups_hourly", "rollups_1h"]
    assert "day_sketches" not in tables(granularity="day", tz="America/New_York"), "local days: hourly rows"
    assert tables(granularity="day", start=now - timedelta(days=30)) == ["rollups_1h"], "inside the hot tier"


def test_the_mover_writes_the_day_sketches_with_the_daily_rollups(tmp_path: Path) -> None:
    from storage_tiers.tiers.movers import TierMover
    from tests.unit.test_cold_tables import DAY, HOURS, _archive_and_rollups
    from tests.unit.test_cold_tables import _events as archive_events

    settings = Settings(home=tmp_path / "home", tier_policy="")
    rows = {h: archive_events(h, 4 + i, "acme") + archive_events(h, 2, "beta") for i, h in enumerate(HOURS)}
    _archive_and_rollups(settings, rows)
    audit = AuditLog(settings)
    mover = TierMover(settings, load_policy(settings), audit, as_of=datetime(2024, 6, 1, tzinfo=UTC))
    assert mover.build_daily_rollups(DAY).problems == []
    assert is_current(settings, DAY)
    stored = lake_query("SELECT tenant, events FROM day_sketches WHERE dimension = ''", settings).to_pylist()
    assert {r["tenant"]: r["events"] for r in stored} == {"acme": 4 + 5 + 6, "beta": 6}
    assert [r["dataset"] for r in audit.records() if r["action"] == "compact_cold"] == ["rollups_daily",
                                                                                        "day_sketches"]
    assert mover.build_daily_rollups(DAY).actions == [], "nothing to rebuild"


def test_a_retention_purge_leaves_the_sketches_as_a_rebuild_would_and_keeps_held_rows(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", tier_policy="")
    rng = random.Random(7)
    old = [date(2018, 6, 1), date(2018, 6, 2)]  # past the default 7-year retention
    for day in old:
        events = _events(day, "acme", rng, 800, 300) + _events(day, "beta", rng, 800, 300)
        publish_day(settings, COLD_ROLLUPS_DAILY_TABLE, day, _daily_rollups(events, day), ROLLUP_KEYS, [], {}, "t")
        build_day_sketches(settings, day, "t")
    audit = AuditLog(settings)
    place_hold(audit, "acme", old[0].isoformat(), old[0].isoformat(), "case 16", placed_by="test")

    report = Purger(settings, load_policy(settings), audit, as_of=datetime(2026, 3, 2, tzinfo=UTC)).run(
        confirm_large=True)

    assert {(i.dataset, i.partition, tuple(i.tenants)) for i in report.items if i.dataset == "day_sketches"} == {
        ("day_sketches", "dt=2018-06-01", ("beta",)), ("day_sketches", "dt=2018-06-02", ("acme", "beta"))}
    assert published(settings, DAY_SKETCHES_TABLE, old[1]) is None, "a day purged whole is gone"
    kept = read_day(settings, DAY_SKETCHES_TABLE, old[0])
    assert set(kept["tenant"].to_pylist()) == {"acme"}, "only the held tenant's rows remain"
    assert is_current(settings, old[0]), "the purged day needs no rebuild"
    rebuilt = sketch_rows(read_day(settings, COLD_ROLLUPS_DAILY_TABLE, old[0]), old[0])
    assert kept.sort_by([("dimension", "ascending"), ("value", "ascending")]).to_pylist() == \
        rebuilt.sort_by([("dimension", "ascending"), ("value", "ascending")]).to_pylist()
    purges = {r["dataset"] for r in audit.records() if r["action"] == "purge"}
    assert "day_sketches" in purges


def test_sketch_rows_count_each_dimension_value_once_and_no_missing_user() -> None:
    day = date(2026, 1, 1)
    daily = _daily_rollups([
        {"tenant": "a", "event": "view", "country": None, "device": "m", "page": "/", "user_id": "x", "revenue": 0.0},
        {"tenant": "a", "event": "view", "country": None, "device": "m", "page": "/b", "user_id": "x", "revenue": 0.0},
        {"tenant": "a", "event": "buy", "country": "US", "device": "d", "page": "/", "user_id": "y", "revenue": 2.5},
        {"tenant": "b", "event": "view", "country": "US", "device": "m", "page": "/", "user_id": None, "revenue": 0.0},
    ], day)
    got = {(r["tenant"], r["dimension"], r["value"]): (r["events"], r["revenue"], r["users"])
           for r in sketch_rows(daily, day).to_pylist()}
    assert got == {
        ("a", "", ""): (3, 2.5, 2), ("a", "event", "view"): (2, 0.0, 1), ("a", "event", "buy"): (1, 2.5, 1),
        ("a", "country", ""): (2, 0.0, 1), ("a", "country", "US"): (1, 2.5, 1), ("a", "device", "m"): (2, 0.0, 1),
        ("a", "device", "d"): (1, 2.5, 1),
        ("b", "", ""): (1, 0.0, 0), ("b", "event", "view"): (1, 0.0, 0), ("b", "country", "US"): (1, 0.0, 0),
        ("b", "device", "m"): (1, 0.0, 0)}


def test_a_backfill_builds_the_missing_days_once(tmp_path: Path) -> None:
    from storage_tiers.tiers.day_sketches import backfill

    settings = Settings(home=tmp_path / "home", tier_policy="")
    rng = random.Random(3)
    days = [date(2025, 3, 1), date(2025, 3, 2)]
    for day in days:
        events = _events(day, "acme", rng, 100, 50)
        publish_day(settings, COLD_ROLLUPS_DAILY_TABLE, day, _daily_rollups(events, day), ROLLUP_KEYS, [], {}, "t")
    assert backfill(settings, progress=lambda _line: None) == days
    assert all(is_current(settings, d) for d in days)
    assert backfill(settings, progress=lambda _line: None) == [], "nothing left to build"
