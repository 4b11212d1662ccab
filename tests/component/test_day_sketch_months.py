"""Day sketches compacted by month, and read only where every day has current sketches (temporary lake, no services).

Two tenants' synthetic events on days over three months become daily rollups and day sketches, as the tier movers
write them. The truth is computed here from the events: compacting the complete months into one file each changes
no answer; a purge of a tenant in a compacted month removes its rows and is audited; a day whose daily rollups
change after compaction is answered the old way until its sketches are rebuilt, then from them; and with the
sketches on (the default) a lake without them, or with only some days, answers exactly as the old way does.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from common.lake_tables import COLD_ROLLUPS_DAILY_TABLE, DAY_SKETCHES_TABLE, open_table
from common.settings import Settings
from common.sketches import relative_error_bound
from serving.query.engine import QueryEngine
from serving.query.spec import Filter, QuerySpec
from serving.query.tier_routing import Horizons
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.compliance.holds import place_hold
from storage_tiers.lake.reader import LakeRollupReader
from storage_tiers.lake.sql import lake_query
from storage_tiers.policy import load_policy
from storage_tiers.tiers.cold_files import ROLLUP_KEYS, publish_day
from storage_tiers.tiers.day_sketches import (
    PRECISIONS,
    backfill,
    build_day_sketches,
    compact_months,
    is_current,
    migrate,
    stale_days,
)
from storage_tiers.tiers.purge import Purger
from tests.component.test_day_sketches import _daily_rollups, _events

DAYS = [date(2018, 1, 2) + timedelta(days=7 * k) for k in range(13)]  # 2 Jan .. 27 Mar 2018: three months
START = datetime(2018, 1, 1, tzinfo=UTC)
NOW = datetime(2018, 4, 3, tzinfo=UTC)
# no hot tier and no warm hours: the daily rollups are the old way for every shape (the lake has no hourly rollups)
LAKE_ONLY = Horizons(hot_minute=timedelta(0), hot_hour=timedelta(0), warm_hour=timedelta(0))
SHAPES: dict[str, dict[str, Any]] = {
    "series": {"granularity": "day"},
    "total": {},
    "by country": {"dimensions": ("country",)},
    "two events": {"filters": (Filter("event", "in", ("click", "purchase")),)},
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """A lake with the daily rollups of every day and no day sketches, and the events they were built from."""
    home = tmp_path_factory.mktemp("sketch-months")
    settings = _settings(home)
    rng = random.Random(1616)
    everything = []
    for day in DAYS:
        events = _events(day, "acme", rng, 2_000, 600) + _events(day, "beta", rng, 80, 60)
        everything += events
        publish_day(settings, COLD_ROLLUPS_DAILY_TABLE, day, _daily_rollups(events, day), ROLLUP_KEYS, [], {}, "t")
    return home, everything


def _settings(home: Path) -> Settings:
    return Settings(home=home, lake_uri=str(home / "lake"), tier_policy="", lake_session_seconds=0)


@pytest.fixture
def lake(template: tuple[Path, list], tmp_path: Path) -> Iterator[tuple[Settings, list, LakeRollupReader]]:
    home = tmp_path / "home"
    shutil.copytree(template[0], home)
    settings = _settings(home)
    reader = LakeRollupReader(settings, listing_seconds=0)
    yield settings, template[1], reader
    reader.close()


def _run(reader: LakeRollupReader, tenant: str, shape: str, sketches: bool = True, **kw: Any) -> Any:
    engine = QueryEngine(None, reader, horizons=LAKE_ONLY, day_sketches=sketches)
    spec = QuerySpec(**({"metrics": ("events", "revenue", "unique_users"), "start": START, "end": NOW}
                        | SHAPES[shape] | kw))
    return engine.run(tenant, spec, NOW)


def _answers(reader: LakeRollupReader, sketches: bool = True) -> dict[tuple[str, str], Any]:
    return {(t, s): _run(reader, t, s, sketches) for t in ("acme", "beta") for s in SHAPES}


def _month_files(settings: Settings) -> dict[str, int]:
    delta = open_table(settings, DAY_SKETCHES_TABLE)
    counts: dict[str, int] = {}
    for month in delta.get_add_actions(flatten=True).column("partition.month").to_pylist():
        counts[str(month)] = counts.get(str(month), 0) + 1
    return counts


def _build_all(settings: Settings) -> None:
    for day in DAYS:
        assert build_day_sketches(settings, day, "t").built


def _truth(events: list[dict[str, Any]], tenant: str) -> tuple[int, float, int]:
    mine = [e for e in events if e["tenant"] == tenant]
    return len(mine), sum(e["revenue"] for e in mine), len({e["user_id"] for e in mine})


def test_compacting_the_complete_months_changes_no_answer_and_leaves_one_file_a_month(lake: tuple) -> None:
    settings, events, reader = lake
    _build_all(settings)
    assert _month_files(settings) == {"2018-01": 5, "2018-02": 4, "2018-03": 4}, "a day a file until compacted"
    before = _answers(reader)

    done = compact_months(settings, before=date(2018, 4, 1), run_id="t")

    assert [d["partition"] for d in done] == ["month=2018-01", "month=2018-02", "month=2018-03"]
    assert _month_files(settings) == {"2018-01": 1, "2018-02": 1, "2018-03": 1}
    assert len(reader.files("day_sketches", START, NOW, fresh=True)) == 3, "a long range opens one file a month"
    after = _answers(reader)
    for key, answer in after.items():
        assert answer.sources == ["cold:day_sketches"], key
        assert (answer.columns, answer.rows, answer.error_bounds) == \
            (before[key].columns, before[key].rows, before[key].error_bounds), key
    for tenant in ("acme", "beta"):  # against the events themselves
        n, revenue, users = _truth(events, tenant)
        [[got_n, got_revenue, got_users]] = after[(tenant, "total")].rows
        assert got_n == n and got_revenue == pytest.approx(revenue)
        assert abs(got_users - users) <= relative_error_bound(PRECISIONS[""]) * users
    assert stale_days(open_table(settings, DAY_SKETCHES_TABLE), open_table(settings, COLD_ROLLUPS_DAILY_TABLE)) == []
    assert all(is_current(settings, d) for d in DAYS)
    assert compact_months(settings, before=date(2018, 4, 1)) == [], "one file a month already"
    assert lake_query("SELECT count(DISTINCT dt) AS n FROM day_sketches", settings)["n"][0].as_py() == len(DAYS)


def test_a_purge_in_a_compacted_month_removes_the_tenant_and_is_audited(lake: tuple) -> None:
    settings, events, reader = lake
    _build_all(settings)
    compact_months(settings, before=date(2018, 4, 1))
    acme_before = {s: _run(reader, "acme", s).rows for s in SHAPES}
    audit = AuditLog(settings)
    place_hold(audit, "acme", DAYS[0].isoformat(), DAYS[-1].isoformat(), "case 16", placed_by="test")

    report = Purger(settings, load_policy(settings), audit, as_of=datetime(2026, 3, 2, tzinfo=UTC)).run(
        confirm_large=True)

    purged = {(i.partition, tuple(i.tenants)) for i in report.items if i.dataset == "day_sketches"}
    assert purged == {(f"dt={d}", ("beta",)) for d in DAYS}
    assert _month_files(settings) == {"2018-01": 1, "2018-02": 1, "2018-03": 1}, "each month rewritten, one file"
    tenants = lake_query("SELECT DISTINCT tenant FROM day_sketches", settings)["tenant"].to_pylist()
    assert tenants == ["acme"], "the held tenant's rows only"
    records = [r for r in audit.records() if r["action"] == "purge" and r["dataset"] == "day_sketches"]
    assert {r["partition"] for r in records} == {f"dt={d}" for d in DAYS}
    assert all(r["details"]["table"] == DAY_SKETCHES_TABLE.name and r["details"]["tenants"] == ["beta"]
               and r["details"]["table_version"] is not None for r in records)
    beta = _run(reader, "beta", "total")
    assert beta.rows in ([], [[0, 0.0, 0]]), "nothing of the purged tenant is answered"
    for shape, rows in acme_before.items():
        answer = _run(reader, "acme", shape)
        assert answer.sources == ["cold:day_sketches"] and answer.rows == rows, shape
    assert all(is_current(settings, d) for d in DAYS), "the purged days need no rebuild"


def test_a_day_changed_after_compaction_is_read_the_old_way_until_rebuilt_then_from_its_sketches(lake: tuple) -> None:
    settings, events, reader = lake
    _build_all(settings)
    compact_months(settings, before=date(2018, 4, 1))
    changed = DAYS[6]  # in February
    extra = _events(changed, "acme", random.Random(5), 50_000, 400)  # 400 more events, mostly new users
    mine = [e for e in events if e["at"].date() == changed]
    publish_day(settings, COLD_ROLLUPS_DAILY_TABLE, changed, _daily_rollups(mine + extra, changed), ROLLUP_KEYS,
                [], {}, "t")
    truth = _truth(events + extra, "acme")

    assert stale_days(open_table(settings, DAY_SKETCHES_TABLE), open_table(settings, COLD_ROLLUPS_DAILY_TABLE)) == \
        [changed]
    answer = _run(reader, "acme", "total")
    assert answer.sources == ["cold:rollups_daily"], "the old way while the day is stale"
    assert answer.rows[0][0] == truth[0] and answer.rows[0][2] == truth[2]
    series = _run(reader, "acme", "series")
    assert series.sources == ["cold:rollups_daily"]

    assert build_day_sketches(settings, changed, "t").built
    assert _month_files(settings)["2018-02"] == 1, "the month's file rewritten with the day, still one file"
    answer = _run(reader, "acme", "total")
    assert answer.sources == ["cold:day_sketches"]
    assert answer.rows[0][0] == truth[0] and answer.rows[0][1] == pytest.approx(truth[1])
    assert abs(answer.rows[0][2] - truth[2]) <= relative_error_bound(PRECISIONS[""]) * truth[2]
    day_rows = {r[0]: r for r in _run(reader, "acme", "series").rows}
    old_rows = {r[0]: r for r in _run(reader, "acme", "series", sketches=False).rows}
    assert day_rows.keys() == old_rows.keys()
    for bucket, row in day_rows.items():  # a day's own unique users are exact in the sketches
        assert (row[1], row[3]) == (old_rows[bucket][1], old_rows[bucket][3])


def test_with_the_sketches_on_a_lake_without_them_or_with_some_days_answers_as_the_old_way(lake: tuple) -> None:
    settings, _events_, reader = lake
    assert Settings().query_day_sketches, "on by default"
    old = _answers(reader, sketches=False)

    def same_as_old(expect_sketches: bool) -> None:
        for key, answer in _answers(reader).items():
            assert ("cold:day_sketches" in answer.sources) is expect_sketches, key
            if not expect_sketches:
                assert (answer.sources, answer.approximate) == (old[key].sources, old[key].approximate), key
                assert len(answer.rows) == len(old[key].rows), key
                for got, want in zip(answer.rows, old[key].rows, strict=True):  # DuckDB adds floats in any order
                    assert [pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for v in got] == want, key

    same_as_old(False)  # a lake whose daily rollups have no sketches at all
    for day in DAYS[::2]:
        build_day_sketches(settings, day, "t")
    same_as_old(False)  # half the days
    narrow = _run(reader, "acme", "series", start=datetime(2018, 1, 2, tzinfo=UTC),
                  end=datetime(2018, 1, 3, tzinfo=UTC))
    assert narrow.sources == ["cold:day_sketches"], "a range of sketched days only reads them"

    built = backfill(settings, "t", progress=lambda _line: None, max_days=3)
    assert built == DAYS[1::2][-3:], "the newest missing days first"
    same_as_old(False)
    backfill(settings, "t", progress=lambda _line: None, compact_before=date(2018, 4, 1))
    same_as_old(True)
    assert _month_files(settings) == {"2018-01": 1, "2018-02": 1, "2018-03": 1}


def test_a_table_in_the_former_day_layout_is_read_the_old_way_and_rebuilt_by_months(lake: tuple) -> None:
    from deltalake import write_deltalake

    from common.lake_tables import table_uri, with_partition_columns
    from storage_tiers.tiers.cold_files import read_day
    from storage_tiers.tiers.day_sketches import sketch_rows

    settings, _events_, reader = lake
    rows = sketch_rows(read_day(settings, COLD_ROLLUPS_DAILY_TABLE, DAYS[0]), DAYS[0])
    plain = with_partition_columns(rows, COLD_ROLLUPS_DAILY_TABLE, datetime(2018, 1, 2, tzinfo=UTC))
    write_deltalake(table_uri(settings, DAY_SKETCHES_TABLE), plain, partition_by=["dt"], mode="append")
    assert lake_query("SELECT count(*) AS n FROM day_sketches", settings)["n"][0].as_py() == rows.num_rows
    assert _run(reader, "acme", "series", start=START, end=datetime(2018, 1, 3, tzinfo=UTC)).sources == \
        ["cold:rollups_daily"], "a table in the day layout is not read by the API"

    assert migrate(settings, "t") and not migrate(settings, "t")
    assert backfill(settings, "t", progress=lambda _line: None, compact_before=date(2018, 4, 1)) == DAYS
    assert _month_files(settings) == {"2018-01": 1, "2018-02": 1, "2018-03": 1}
    assert _run(reader, "acme", "total").sources == ["cold:day_sketches"]


def test_a_mover_run_builds_missing_days_and_compacts_the_complete_months_audited(lake: tuple) -> None:
    from storage_tiers.tiers.movers import SKETCH_BACKFILL_DAYS, DayReport, TierMover

    settings, _events_, reader = lake
    audit = AuditLog(settings)
    mover = TierMover(settings, load_policy(settings), audit, as_of=datetime(2018, 4, 2, tzinfo=UTC), run_id="r")
    assert len(DAYS) <= SKETCH_BACKFILL_DAYS

    mover._sketch_upkeep(DAYS[-1], DayReport(DAYS[-1]))  # (its own day is built by the step before)

    assert stale_days(open_table(settings, DAY_SKETCHES_TABLE), open_table(settings, COLD_ROLLUPS_DAILY_TABLE)) == \
        [DAYS[-1]]
    assert _month_files(settings) == {"2018-01": 1, "2018-02": 1, "2018-03": 1}, "a complete month: one file"
    records = [r for r in audit.records() if r["dataset"] == "day_sketches" and r["action"] == "compact_cold"]
    assert {r["partition"] for r in records} == {f"dt={d}" for d in DAYS[:-1]} | {
        "month=2018-01", "month=2018-02", "month=2018-03"}
    months = [r for r in records if r["partition"].startswith("month=")]
    assert all(r["details"]["files_compacted"] > 1 and r["details"]["table_version"] is not None for r in months)
    assert sum(len(r["details"]["days"]) for r in months) == len(DAYS) - 1
