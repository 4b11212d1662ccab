"""The lake's Delta tables on a local lake, no services: atomic hour replacement under a concurrent reader, time
travel, erasure that leaves no file holding purged rows (held rows kept), and every documented reader (DuckDB over
the log's files, DuckDB ``delta_scan``, pandas through the table's pyarrow dataset, chDB) giving the same numbers.

The truth is the rows the test wrote, counted in Python. MinIO (concurrent writers, S3) is covered by
tests/integration/test_lake_on_minio.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.archive import verify_hour
from common.events import EVENT_ARROW_SCHEMA
from common.lake import archive_path, lake_filesystem
from common.lake_duckdb import lake_session, load_delta
from common.lake_tables import (
    ARCHIVE_TABLE,
    COLD_EVENTS_TABLE,
    WarmTable,
    open_table,
    replace_partition,
    with_partition_columns,
)
from common.settings import REPO_ROOT, Settings
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.compliance.holds import place_hold
from storage_tiers.lake.sql import lake_connection, lake_query
from storage_tiers.policy import load_policy
from storage_tiers.tiers.cold_files import EVENTS_SORT, publish_day
from storage_tiers.tiers.purge import Purger

HOUR = datetime(2026, 3, 1, 9, tzinfo=UTC)


def _events(n: int, tenant: str = "acme", hour: datetime = HOUR, prefix: str = "e") -> pa.Table:
    return pa.Table.from_pylist([
        {"tenant": tenant, "event": "click", "timestamp": hour + timedelta(seconds=i), "event_id": f"{prefix}{i}",
         "user_id": f"u{i % 7}", "page": "/", "country": "FR", "device": "mobile", "revenue": float(i),
         "properties": "{}", "received_at": hour + timedelta(seconds=i)} for i in range(n)], schema=EVENT_ARROW_SCHEMA)


def _replace(settings: Settings, table: pa.Table, hour: datetime = HOUR) -> int:
    return replace_partition(settings, ARCHIVE_TABLE, hour, with_partition_columns(table, ARCHIVE_TABLE, hour),
                             "archive", {"rows": table.num_rows})


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", tier_policy="")


def test_a_reader_never_sees_a_half_replaced_hour(settings: Settings) -> None:
    sizes = (300, 1700)
    _replace(settings, _events(sizes[0]))
    stop = threading.Event()
    errors: list[BaseException] = []

    def restate() -> None:
        try:
            i = 0
            while not stop.is_set():
                i += 1
                _replace(settings, _events(sizes[i % 2], prefix=f"r{i}-"))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    writer = threading.Thread(target=restate)
    writer.start()
    seen = []
    try:
        for _ in range(60):
            con = lake_connection(settings)
            try:
                seen.append(con.sql("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone())
            finally:
                con.close()
    finally:
        stop.set()
        writer.join()
    assert not errors, errors
    assert {n for n, _ in seen} <= set(sizes) and all(n == d for n, d in seen), seen
    assert open_table(settings, ARCHIVE_TABLE).version() > 2, "the restatements really ran beside the reader"


def test_time_travel_returns_the_previous_versions_numbers(settings: Settings) -> None:
    first = _replace(settings, _events(40))
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    second = _replace(settings, _events(25, prefix="x"))
    time.sleep(0.05)
    after = datetime.now(UTC)
    query = "SELECT count(*) AS n, sum(revenue) AS r FROM events WHERE dt = DATE '2026-03-01' AND hour = 9"
    assert lake_query(query, settings, as_of=first).to_pylist() == [{"n": 40, "r": float(sum(range(40)))}]
    assert lake_query(query, settings, as_of=str(second)).to_pylist() == [{"n": 25, "r": float(sum(range(25)))}]
    assert lake_query(query, settings).to_pylist() == [{"n": 25, "r": float(sum(range(25)))}]
    # by instant: a commit's time in the log is in milliseconds while the log file's own time is later, so the
    # instants are taken between the commits rather than from the log
    assert lake_query(query, settings, as_of=between.isoformat()).to_pylist()[0]["n"] == 40
    assert lake_query(query, settings, as_of=after.isoformat()).to_pylist()[0]["n"] == 25


def test_a_purged_tenant_is_physically_gone_after_vacuum_and_held_rows_stay(settings: Settings) -> None:
    old = datetime(2018, 5, 1, 3, tzinfo=UTC)  # past the default 7-year retention as of now
    _replace(settings, pa.concat_tables([_events(30, "acme", old), _events(20, "beta", old, "b")]), old)
    _replace(settings, _events(12, "beta", old + timedelta(hours=1), "c"), old + timedelta(hours=1))
    recent = HOUR
    _replace(settings, _events(9, "beta", recent, "d"), recent)
    audit = AuditLog(settings)
    place_hold(audit, "acme", old.date().isoformat(), old.date().isoformat(), "case 1", placed_by="test")
    report = Purger(settings, load_policy(settings), audit, as_of=datetime(2026, 3, 2, tzinfo=UTC)).run()
    assert report.vacuumed == {"archive/events": 2}
    assert {(i.partition, tuple(i.tenants), i.whole) for i in report.items} == {
        ("dt=2018-05-01/hour=03", ("beta",), False), ("dt=2018-05-01/hour=04", ("beta",), True)}
    # Every Parquet file left under the table, read straight from disk: no purged row anywhere.
    stored = [pq.read_table(p).select(EVENT_ARROW_SCHEMA.names).cast(EVENT_ARROW_SCHEMA)  # a delete rewrites as
              for p in Path(archive_path(settings)).rglob("*.parquet") if "_delta_log" not in str(p)]  # string_view
    rows = pa.concat_tables(stored).to_pylist()
    assert sorted((r["tenant"], r["timestamp"].date()) for r in rows) == sorted(
        [("acme", date(2018, 5, 1))] * 30 + [("beta", recent.date())] * 9)
    purges = [r for r in audit.records() if r["action"] == "purge"]
    assert all(r["details"]["table_version"] is not None for r in purges)
    assert verify_hour(settings, old) == [], "the partly purged hour still verifies against its delete commit"


def _direct_readers(settings: Settings, table: WarmTable) -> dict[str, dict[str, tuple[int, float]]]:
    """Events and revenue per tenant of one Delta table as each engine a data scientist would use reads it."""
    uri = open_table(settings, table).table_uri.removeprefix("file://")
    con = lake_session(settings)
    load_delta(con)
    scanned = con.execute("SELECT tenant, count(*), sum(revenue) FROM delta_scan($u) GROUP BY ALL", {"u": uri})
    duck = {t: (n, r) for t, n, r in scanned.fetchall()}
    con.close()
    # pandas, the documented way: the table's pyarrow dataset (filtered on a partition column in practice)
    frame = open_table(settings, table).to_pyarrow_dataset().to_table().to_pandas()
    grouped = frame.groupby("tenant").agg(n=("event_id", "count"), r=("revenue", "sum"))
    pandas = {k: (int(v.n), float(v.r)) for k, v in grouped.iterrows()}
    # chDB in its own process (a session of its own, as a notebook would have it). deltaLakeLocal reads only below
    # chDB's user_files_path, which is the working directory: start it in the lake.
    script = ("import chdb, sys; print(chdb.query(\"SELECT tenant, count(), sum(revenue) FROM "
              "deltaLakeLocal('\" + sys.argv[1] + \"') GROUP BY ALL ORDER BY 1\", 'TSV'))")
    out = subprocess.run([sys.executable, "-c", script, uri], capture_output=True, text=True, timeout=120,
                         cwd=settings.effective_lake_uri, check=True).stdout
    chdb = {t: (int(n), float(r)) for t, n, r in (line.split("\t") for line in out.strip().splitlines())}
    return {"duckdb": duck, "pandas": pandas, "chdb": chdb}


def test_duckdb_pandas_and_chdb_read_the_same_numbers(settings: Settings) -> None:
    _replace(settings, _events(50))
    _replace(settings, _events(20, "beta", HOUR + timedelta(hours=1), "b"), HOUR + timedelta(hours=1))
    truth = {("acme", 9): (50, float(sum(range(50)))), ("beta", 10): (20, float(sum(range(20))))}
    views = lake_query("SELECT tenant, hour, count(*) AS n, sum(revenue) AS r FROM events GROUP BY ALL", settings)
    assert {(r["tenant"], r["hour"]): (r["n"], r["r"]) for r in views.to_pylist()} == truth
    per_tenant = {tenant: numbers for (tenant, _), numbers in truth.items()}
    assert _direct_readers(settings, ARCHIVE_TABLE) == dict.fromkeys(("duckdb", "pandas", "chdb"), per_tenant)


def test_the_cold_events_table_reads_the_same_in_every_engine(settings: Settings) -> None:
    day = date(2019, 4, 2)
    at = datetime(2019, 4, 2, 7, tzinfo=UTC)
    rows = pa.concat_tables([_events(30, "acme", at), _events(12, "beta", at + timedelta(hours=5), "b")])
    publish_day(settings, COLD_EVENTS_TABLE, day, rows, EVENTS_SORT, [], {}, None)
    truth = {"acme": (30, float(sum(range(30)))), "beta": (12, float(sum(range(12))))}
    views = lake_query("SELECT tenant, count(*) AS n, sum(revenue) AS r FROM events WHERE dt = $d GROUP BY ALL",
                       settings, {"d": day})
    assert {r["tenant"]: (r["n"], r["r"]) for r in views.to_pylist()} == truth
    assert _direct_readers(settings, COLD_EVENTS_TABLE) == dict.fromkeys(("duckdb", "pandas", "chdb"), truth)


def _old_layout(settings: Settings) -> dict[datetime, int]:
    """A lake as the manifest protocol wrote it: archive hours with ``_manifest.json`` (one of them at hour 15,
    whose folder name the table shares), warm rollups in Spark's ``hour=HH`` folders; returns rows per hour."""
    from batch.archive import content_checksum

    lake = Path(settings.effective_lake_uri)
    rows = {HOUR.replace(hour=3): 30, HOUR.replace(hour=15): 45}
    for hour, n in rows.items():
        folder = lake / "archive" / "events" / f"dt={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        folder.mkdir(parents=True)
        table = _events(n, hour=hour, prefix=f"h{hour.hour}-")
        pq.write_table(table.slice(0, 10), folder / "part-run1-00000.zstd.parquet")
        pq.write_table(table.slice(10), folder / "part-run1-00001.zstd.parquet")
        files = [str(folder / "part-run1-00000.zstd.parquet"), str(folder / "part-run1-00001.zstd.parquet")]
        checksum, _n = content_checksum(settings, files)
        (folder / "_manifest.json").write_text(json.dumps({
            "rows": n, "checksum": checksum, "landing_files": ["x"], "files": [{"path": Path(f).name} for f in files]}))
        warm = lake / "warm" / "rollups_hourly" / f"dt={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        warm.mkdir(parents=True)
        pq.write_table(pa.table({"tenant": ["acme"], "event": ["click"], "country": ["FR"], "device": ["mobile"],
                                 "page": ["/"], "hour": pa.array([hour], pa.timestamp("us", tz="UTC")),
                                 "events": pa.array([n], pa.int64()), "revenue": [1.0], "user_ids": [["u1"]]}),
                       warm / "part-00000-x.c000.zstd.parquet")
        (warm / "_SUCCESS").write_text("")
    return rows


def test_migration_moves_an_old_lake_into_the_tables_once_verified_and_resumable(settings: Settings) -> None:
    from storage_tiers.lake.migration import _migrate_hour, migrate_lake

    rows = _old_layout(settings)
    # An interrupted earlier run: hour 03 was committed, its old files not yet deleted.
    old03 = Path(settings.effective_lake_uri) / "archive" / "events" / "dt=2026-03-01" / "hour=03"
    assert _migrate_hour(settings, lake_filesystem(settings), ARCHIVE_TABLE, HOUR.replace(hour=3), str(old03)) == (
        None, 30)
    env = {**os.environ, "LAKEHOUSE_HOME": str(settings.home), "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run([sys.executable, "-m", "cli.main", "lake", "migrate"], env=env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "migrated 4 hour(s) (77 rows)" in run.stdout  # archive: 30 + 45 rows; rollups: one row per hour
    counts = lake_query("SELECT hour, count(*) AS n FROM events GROUP BY hour ORDER BY hour", settings).to_pylist()
    assert counts == [{"hour": h.hour, "n": n} for h, n in sorted(rows.items())]
    hourly = lake_query("SELECT hour_of_day, sum(events) AS n FROM rollups_hourly GROUP BY ALL ORDER BY 1", settings)
    assert hourly.to_pylist() == [{"hour_of_day": h.hour, "n": n} for h, n in sorted(rows.items())]
    leftovers = [p.name for p in Path(settings.effective_lake_uri).rglob("*")
                 if p.name in ("_manifest.json", "_SUCCESS") or p.name.startswith("part-run1")]
    assert leftovers == []
    for hour in rows:
        assert verify_hour(settings, hour) == []
    again = migrate_lake(settings, progress=lambda _m: None)
    assert (again.migrated, again.kept_newer, again.problems) == ([], [], [])
