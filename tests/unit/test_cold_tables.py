"""The cold tier as Delta tables on a local lake, no services: the mover commits a verified cold day and empties the
warm hours; a cold day re-read differently from its commit fails verification; time travel by instant; a purge of a
cold day leaves no file holding the purged tenant's rows while held rows stay; the migration of a cold day in the old
folder layout (file + manifest) is verified, idempotent and keeps the day's sources so the mover does not rebuild it.

The truth is the rows the test wrote, counted in Python.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.events import EVENT_ARROW_SCHEMA, format_ts
from common.lake import cold_events_path, lake_filesystem
from common.lake_io import parquet_bytes, sha256
from common.lake_tables import (
    ARCHIVE_TABLE,
    COLD_EVENTS_TABLE,
    COLD_ROLLUPS_DAILY_TABLE,
    ROLLUPS_HOURLY_SCHEMA,
    ROLLUPS_HOURLY_TABLE,
    open_table,
    partition_files,
    replace_partition,
    with_partition_columns,
)
from common.settings import Settings
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.compliance.holds import place_hold
from storage_tiers.lake.migration import migrate_lake
from storage_tiers.lake.sql import lake_query, table_files
from storage_tiers.policy import load_policy
from storage_tiers.tiers.cold_files import (
    EVENTS_SORT,
    archive_sources,
    publish_day,
    published,
    verify_cold_day,
)
from storage_tiers.tiers.movers import TierMover
from storage_tiers.tiers.purge import Purger

DAY = date(2024, 5, 2)
HOURS = [datetime(2024, 5, 2, h, tzinfo=UTC) for h in (1, 13, 22)]


def _events(hour: datetime, n: int, tenant: str, prefix: str = "e") -> list[dict]:
    return [{"tenant": tenant, "event": "click" if i % 3 else "view", "timestamp": hour + timedelta(seconds=7 * i),
             "event_id": f"{prefix}{hour:%H}-{tenant}-{i}", "user_id": f"u{i % 4}", "page": "/", "country": "FR",
             "device": "mobile", "revenue": float(i), "properties": "{}", "received_at": hour} for i in range(n)]


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=EVENT_ARROW_SCHEMA)


def _truth(rows: list[dict]) -> dict[tuple, tuple]:
    n, r = Counter(), Counter()
    for row in rows:
        key = (row["tenant"], row["timestamp"].hour)
        n[key] += 1
        r[key] += row["revenue"]
    return {k: (n[k], r[k]) for k in n}


def _answers(settings: Settings, day: date = DAY, **kw) -> dict[tuple, tuple]:
    got = lake_query("SELECT tenant, hour, count(*) AS n, sum(revenue) AS r FROM events WHERE dt = $d GROUP BY ALL",
                     settings, {"d": day}, **kw)
    return {(row["tenant"], row["hour"]): (row["n"], row["r"]) for row in got.to_pylist()}


def _stored_rows(root: str) -> list[dict]:
    """Every Parquet file under a table's folder, read straight from disk (not through the log)."""
    files = [p for p in Path(root).rglob("*.parquet") if "_delta_log" not in str(p)]
    return [r for f in files for r in pq.read_table(f).select(["tenant", "event_id"]).to_pylist()]


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", tier_policy="")


def _archive_and_rollups(settings: Settings, rows_by_hour: dict[datetime, list[dict]]) -> None:
    for hour, rows in rows_by_hour.items():
        replace_partition(settings, ARCHIVE_TABLE, hour, with_partition_columns(_table(rows), ARCHIVE_TABLE, hour),
                          "archive", {"rows": len(rows)})
        counts = Counter(r["tenant"] for r in rows)
        rollups = pa.Table.from_pylist([
            {"tenant": t, "event": "any", "country": "FR", "device": "mobile", "page": "/", "hour": hour, "events": c,
             "revenue": 0.0, "user_ids": ["u"]} for t, c in counts.items()], schema=ROLLUPS_HOURLY_SCHEMA)
        replace_partition(settings, ROLLUPS_HOURLY_TABLE, hour, with_partition_columns(
            rollups, ROLLUPS_HOURLY_TABLE, hour), "recompute", {"rows": rollups.num_rows})


def test_the_mover_commits_a_verified_cold_day_then_empties_the_warm_hours(settings: Settings) -> None:
    rows_by_hour = {h: _events(h, 5 + i, "acme") + _events(h, 3, "beta") for i, h in enumerate(HOURS)}
    everything = [r for rows in rows_by_hour.values() for r in rows]
    _archive_and_rollups(settings, rows_by_hour)
    assert _answers(settings) == _truth(everything)
    audit = AuditLog(settings)
    mover = TierMover(settings, load_policy(settings), audit, as_of=datetime(2025, 12, 1, tzinfo=UTC))

    report = mover.warm_to_cold(DAY)

    assert report.problems == [], report.problems
    assert archive_sources(settings, lake_filesystem(settings), DAY) == [], "the archive hours were deleted"
    assert _answers(settings) == _truth(everything), "the day now answers from cold, unchanged"
    manifest = published(settings, COLD_EVENTS_TABLE, DAY)
    assert manifest["rows"] == len(everything) and manifest["tenants"] == dict(Counter(r["tenant"] for r in everything))
    assert sum(manifest["hour_rows"].values()) == len(everything)
    assert verify_cold_day(settings, COLD_EVENTS_TABLE, DAY) == []
    assert verify_cold_day(settings, COLD_ROLLUPS_DAILY_TABLE, DAY) == []
    daily = lake_query("SELECT tenant, sum(events) AS n FROM rollups_daily GROUP BY ALL", settings).to_pylist()
    assert {r["tenant"]: r["n"] for r in daily} == dict(Counter(r["tenant"] for r in everything))
    compact = [r for r in audit.records() if r["action"] == "compact_cold"]
    assert {r["details"]["table"] for r in compact} == {"cold/events", "cold/rollups_daily", "cold/day_sketches"}
    assert all(r["details"]["table_version"] is not None for r in compact)
    sketched = lake_query("SELECT tenant, events FROM day_sketches WHERE dimension = ''", settings).to_pylist()
    assert {r["tenant"]: r["events"] for r in sketched} == dict(Counter(r["tenant"] for r in everything))
    assert mover.warm_to_cold(DAY).problems == [], "a second run has nothing to do"


def test_a_cold_day_whose_files_disagree_with_its_commit_fails_verification(settings: Settings) -> None:
    rows = _events(HOURS[0], 10, "acme")
    publish_day(settings, COLD_EVENTS_TABLE, DAY, _table(rows), EVENTS_SORT, [], {"hour_rows": {}}, None)
    (path,) = partition_files(settings, COLD_EVENTS_TABLE)
    data = pq.read_table(path)
    pq.write_table(data.set_column(data.schema.get_field_index("revenue"), "revenue",
                                   pa.array([99.0] * data.num_rows)), path)  # same rows, other content
    problems = verify_cold_day(settings, COLD_EVENTS_TABLE, DAY)
    assert any("checksum" in p for p in problems) and any("per hour" in p for p in problems), problems


def test_time_travel_by_instant_reads_the_cold_day_as_it_was(settings: Settings) -> None:
    other = datetime(2024, 5, 9, 3, tzinfo=UTC)  # the archive exists before both cold commits
    replace_partition(settings, ARCHIVE_TABLE, other, with_partition_columns(_table(_events(other, 2, "acme")),
                                                                             ARCHIVE_TABLE, other), "archive", {})
    first = _events(HOURS[0], 12, "acme")
    publish_day(settings, COLD_EVENTS_TABLE, DAY, _table(first), EVENTS_SORT, [], {}, None)
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    second = _events(HOURS[1], 4, "beta", "x")
    publish_day(settings, COLD_EVENTS_TABLE, DAY, _table(second), EVENTS_SORT, [], {}, None)
    assert _answers(settings) == _truth(second)
    assert _answers(settings, as_of=between.isoformat()) == _truth(first)
    before = datetime(2020, 1, 1, tzinfo=UTC).isoformat()  # before the cold table existed: no cold day then
    assert table_files(settings, COLD_EVENTS_TABLE, before) == []
    assert table_files(settings, COLD_EVENTS_TABLE, 0) == table_files(settings, COLD_EVENTS_TABLE), \
        "a version number names the warm tables' versions; the cold tables are read as they are"


def test_a_cold_purge_erases_the_tenant_physically_and_keeps_held_rows(settings: Settings) -> None:
    old = date(2018, 6, 1)  # past the default 7-year retention as of now
    start = datetime(2018, 6, 1, 4, tzinfo=UTC)
    acme, beta = _events(start, 8, "acme"), _events(start, 6, "beta")
    publish_day(settings, COLD_EVENTS_TABLE, old, _table(acme + beta), EVENTS_SORT, [], {}, None)
    gone_day = date(2018, 6, 2)
    publish_day(settings, COLD_EVENTS_TABLE, gone_day, _table(_events(start + timedelta(days=1), 5, "beta", "g")),
                EVENTS_SORT, [], {}, None)
    audit = AuditLog(settings)
    place_hold(audit, "acme", old.isoformat(), old.isoformat(), "case 7", placed_by="test")

    report = Purger(settings, load_policy(settings), audit, as_of=datetime(2026, 3, 2, tzinfo=UTC)).run(
        confirm_large=True)  # both of the lake's days are touched

    assert {(i.partition, tuple(i.tenants), i.whole) for i in report.items} == {
        ("dt=2018-06-01", ("beta",), False), ("dt=2018-06-02", ("beta",), True)}
    assert report.vacuumed["cold/events"] >= 2
    stored = _stored_rows(cold_events_path(settings))
    assert sorted(r["event_id"] for r in stored) == sorted(r["event_id"] for r in acme), "only the held rows remain"
    assert _answers(settings, old) == _truth(acme)
    assert published(settings, COLD_EVENTS_TABLE, gone_day) is None
    manifest = published(settings, COLD_EVENTS_TABLE, old)
    assert manifest["tenants"] == {"acme": 8} and manifest["purged"][0]["tenants"] == ["beta"]
    assert verify_cold_day(settings, COLD_EVENTS_TABLE, old) == [], "the purged day still verifies"
    purges = [r for r in audit.records() if r["action"] == "purge"]
    assert all(r["details"]["table"] == "cold/events" and r["details"]["table_version"] for r in purges)


def test_migration_of_an_old_cold_day_is_verified_idempotent_and_keeps_its_sources(settings: Settings) -> None:
    rows_by_hour = {h: _events(h, 4, "acme") for h in HOURS}
    _archive_and_rollups(settings, rows_by_hour)
    everything = [r for rows in rows_by_hour.values() for r in rows]
    sources = [{k: v for k, v in s.items() if k != "files"}
               for s in archive_sources(settings, lake_filesystem(settings), DAY)]
    # The old layout, as the manifest protocol wrote it: one file, then its manifest.
    folder = Path(cold_events_path(settings)) / f"dt={DAY}"
    folder.mkdir(parents=True)
    body = parquet_bytes(_table(everything).sort_by([(c, "ascending") for c in EVENTS_SORT]), "zstd", EVENTS_SORT)
    (folder / "part-0.parquet").write_bytes(body)
    hour_rows = {format_ts(h): 4 for h in HOURS}
    (folder / "_manifest.json").write_text(json.dumps({
        "format": "lakehouse.cold.manifest/1", "file": "part-0.parquet", "rows": len(everything), "bytes": len(body),
        "sha256": sha256(body), "tenants": {"acme": len(everything)}, "sources": sources, "hour_rows": hour_rows}))

    report = migrate_lake(settings, progress=lambda _line: None)

    assert report.problems == [] and f"cold/events dt={DAY}" in report.migrated
    assert not (folder / "part-0.parquet").exists() and not (folder / "_manifest.json").exists()
    assert open_table(settings, COLD_EVENTS_TABLE) is not None
    manifest = published(settings, COLD_EVENTS_TABLE, DAY)
    assert manifest["rows"] == len(everything) and manifest["old_sha256"] == sha256(body)
    assert [s["checksum"] for s in manifest["sources"]] == [s["checksum"] for s in sources]
    assert verify_cold_day(settings, COLD_EVENTS_TABLE, DAY) == []
    assert _answers(settings) == _truth(everything), "read from the cold table (the archive hours are the same rows)"
    version = open_table(settings, COLD_EVENTS_TABLE).version()
    assert migrate_lake(settings, progress=lambda _line: None).migrated == [], "a second run has nothing to do"
    mover = TierMover(settings, load_policy(settings), AuditLog(settings), as_of=datetime(2025, 12, 1, tzinfo=UTC))
    mover.warm_to_cold(DAY)
    assert open_table(settings, COLD_EVENTS_TABLE).version() == version, "same sources: the mover did not rebuild"


def test_a_corrupt_old_cold_day_is_not_migrated(settings: Settings) -> None:
    folder = Path(cold_events_path(settings)) / f"dt={DAY}"
    folder.mkdir(parents=True)
    body = parquet_bytes(_table(_events(HOURS[0], 3, "acme")), "zstd")
    (folder / "part-0.parquet").write_bytes(body)
    (folder / "_manifest.json").write_text(json.dumps({"file": "part-0.parquet", "rows": 3, "sha256": "0" * 64}))
    report = migrate_lake(settings, progress=lambda _line: None)
    assert report.migrated == [] and "sha256" in report.problems[0]
    assert (folder / "part-0.parquet").exists() and (folder / "_manifest.json").exists()
    assert open_table(settings, COLD_EVENTS_TABLE) is None
