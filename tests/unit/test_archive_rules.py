"""The archive's rules on small hand-made landings: no services, DuckDB in-process, a temporary folder.

The landing files imitate Spark's file sink (INT96 timestamps, ``kafka_partition``/``kafka_offset``,
a ``_spark_metadata`` log); the real Spark landing is covered by tests/integration/test_archive.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import batch.archive as archive
import common.lake_tables as lake_tables
from batch.archive import archive_hour, archived_hour, landing_files_of_hour, verify_hour
from common.lake import (
    _from_spark_uri,
    committed_files,
    file_hour,
    fs_path,
    landing_path,
    unarchived_landing_files,
)
from common.settings import Settings
from storage_tiers.lake.sql import lake_connection

HOUR = datetime(2026, 3, 1, 9, tzinfo=UTC)
LANDING_SCHEMA = pa.schema([
    ("tenant", pa.string()), ("event", pa.string()), ("timestamp", pa.timestamp("us")), ("event_id", pa.string()),
    ("user_id", pa.string()), ("page", pa.string()), ("country", pa.string()), ("device", pa.string()),
    ("properties", pa.string()), ("received_at", pa.timestamp("us")), ("revenue", pa.float64()),
    ("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()),
])


def _row(event_id: str, minute: float, received: float, partition: int = 0, offset: int = 0, **kw: Any) -> dict:
    ts = HOUR + timedelta(minutes=minute)
    return {"tenant": kw.get("tenant", "acme"), "event": kw.get("event", "click"), "timestamp": ts.replace(tzinfo=None),
            "event_id": event_id, "user_id": "u1", "page": kw.get("page", "/"), "country": "FR", "device": "mobile",
            "properties": "", "received_at": (HOUR + timedelta(minutes=received)).replace(tzinfo=None),
            "revenue": kw.get("revenue", 0.0), "kafka_partition": partition, "kafka_offset": offset}


def _land(settings: Settings, batches: list[list[dict]], uncommitted: list[dict] | None = None) -> list[str]:
    """Landing files the way Spark's sink commits them: data files, then one metadata log entry per batch."""
    root = Path(landing_path(settings))
    log = root / "_spark_metadata"
    log.mkdir(parents=True, exist_ok=True)
    paths = []
    for batch_id, rows in enumerate(batches):
        folder = root / "dt=2026-03-01" / "hour=09"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{batch_id:05d}-x.c000.zstd.parquet"
        pq.write_table(pa.Table.from_pylist(rows, LANDING_SCHEMA), path, compression="zstd",
                       use_deprecated_int96_timestamps=True)
        (log / str(batch_id)).write_text("v1\n" + json.dumps({"path": f"file://{path}", "action": "add"}))
        paths.append(str(path))
    if uncommitted:
        pq.write_table(pa.Table.from_pylist(uncommitted, LANDING_SCHEMA),
                       root / "dt=2026-03-01" / "hour=09" / "part-99999-crashed.c000.zstd.parquet")
    return paths


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def _archived(settings: Settings) -> list[dict]:
    """The hour's rows as the table's log lists its files, in archive order."""
    archived = archived_hour(settings, HOUR)
    assert archived is not None
    rows = [r for f in archived.files for r in pq.read_table(f).to_pylist()]
    return sorted(rows, key=lambda r: (r["tenant"], r["event"], r["timestamp"], r["event_id"]))


def test_duplicates_keep_the_first_received_then_the_lowest_kafka_position(settings: Settings) -> None:
    _land(settings, [
        [_row("a", 1, received=2, page="/late-copy"), _row("b", 5, received=6, partition=2, offset=9, page="/p2"),
         _row("c", 59.99, received=60)],
        [_row("a", 1, received=1.5, page="/first"), _row("b", 5, received=6, partition=1, offset=50, page="/p1"),
         _row("b", 5, received=6, partition=1, offset=40, page="/p1-o40")],
    ], uncommitted=[_row("ghost", 3, received=3)])
    result = archive_hour(settings, HOUR, progress=lambda _m: None)
    rows = {r["event_id"]: r for r in _archived(settings)}
    assert set(rows) == {"a", "b", "c"}, "the uncommitted file must not be read"
    assert rows["a"]["page"] == "/first"
    assert rows["b"]["page"] == "/p1-o40"
    assert (result.rows, result.landing_rows, result.extra["duplicates_dropped"]) == (3, 6, 3)
    assert rows["a"]["timestamp"] == HOUR + timedelta(minutes=1) and rows["a"]["timestamp"].utcoffset() == timedelta(0)


def test_the_same_event_id_in_two_tenants_is_two_events(settings: Settings) -> None:
    _land(settings, [[_row("shared", 1, 1, tenant="acme"), _row("shared", 2, 2, tenant="globex"),
                      _row("shared", 1, 3, tenant="acme", offset=7)]])
    result = archive_hour(settings, HOUR, progress=lambda _m: None)
    assert sorted((r["tenant"], r["event_id"]) for r in _archived(settings)) == [("acme", "shared"),
                                                                                ("globex", "shared")]
    assert (result.rows, result.extra["duplicates_dropped"]) == (2, 1)
    assert verify_hour(settings, HOUR) == []


def test_rows_outside_the_hour_or_without_id_are_counted_not_archived(settings: Settings) -> None:
    _land(settings, [[_row("in", 0, 1), _row("next-hour", 60, 61), _row("prev", -0.001, 1),
                      {**_row("x", 2, 3), "event_id": None}]])
    result = archive_hour(settings, HOUR, progress=lambda _m: None)
    assert [r["event_id"] for r in _archived(settings)] == ["in"]
    assert (result.extra["rows_outside_hour"], result.extra["rows_without_event_id"]) == (2, 1)


def test_checksum_is_defined_on_content_not_on_files(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [_row(f"e{i:03d}", i / 10, i / 10 + 1, tenant=f"t{i % 3}", event=f"ev{i % 2}", revenue=i / 7)
            for i in range(200)]
    _land(settings, [rows[:120], rows[120:] + rows[:10]])
    big = archive_hour(settings, HOUR, progress=lambda _m: None)
    monkeypatch.setattr(archive, "ROW_GROUP_ROWS", 8)
    monkeypatch.setattr(lake_tables, "ROW_GROUP_ROWS", 8)
    small = archive_hour(settings, HOUR, progress=lambda _m: None)
    groups = [sum(pq.ParquetFile(f).metadata.num_row_groups for f in r.files) for r in (big, small)]
    assert groups[0] == 1 and groups[1] > 1
    assert small.checksum == big.checksum and small.rows == big.rows == 200
    assert verify_hour(settings, HOUR) == []
    archived = _archived(settings)
    keys = [(r["tenant"], r["event"], r["timestamp"], r["event_id"]) for r in archived]
    assert keys == sorted(keys)
    # A changed value changes the checksum.
    _land(settings, [rows[:120], [{**rows[150], "page": "/changed"}] + rows[120:150] + rows[151:]])
    assert archive_hour(settings, HOUR, progress=lambda _m: None).checksum != big.checksum


def test_a_failed_commit_leaves_the_previous_version_whole(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _land(settings, [[_row("a", 1, 2), _row("b", 2, 3)]])
    first = archive_hour(settings, HOUR, progress=lambda _m: None)

    def crash(*_args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(archive, "replace_partition", crash)
    _land(settings, [[_row("a", 1, 2), _row("b", 2, 3)], [_row("c", 3, 4)]])
    with pytest.raises(OSError, match="disk full"):
        archive_hour(settings, HOUR, progress=lambda _m: None)
    archived = archived_hour(settings, HOUR)
    assert archived is not None and archived.files == first.files
    assert archived.provenance["checksum"] == first.checksum and archived.provenance["version"] == first.version
    assert verify_hour(settings, HOUR) == []


def test_verify_hour_finds_tampering_and_readers_ignore_stray_files(settings: Settings) -> None:
    _land(settings, [[_row("a", 1, 2), _row("b", 2, 3)]])
    result = archive_hour(settings, HOUR, progress=lambda _m: None)
    (Path(result.files[0]).parent / "part-stray.parquet").write_bytes(Path(result.files[0]).read_bytes())
    con = lake_connection(settings)
    assert con.sql("SELECT count(*) FROM events").fetchone() == (2,), "a file outside the log is never read"
    con.close()
    assert verify_hour(settings, HOUR) == []
    Path(result.files[0]).write_bytes(Path(result.files[0]).read_bytes()[:-1])
    problems = verify_hour(settings, HOUR)
    assert len(problems) == 1 and "the log says" in problems[0]
    assert verify_hour(settings, HOUR + timedelta(hours=1)) == [
        "dt=2026-03-01/hour=10 was never archived (no commit of the archive table wrote it)"]


def test_empty_hour_and_empty_archive(settings: Settings) -> None:
    con = lake_connection(settings)
    assert con.sql("SELECT count(*) FROM events").fetchone() == (0,), "no table yet: an empty view"
    con.close()
    result = archive_hour(settings, HOUR, progress=lambda _m: None)
    assert (result.rows, result.files, result.landing_files, result.min_event_time) == (0, [], [], None)
    archived = archived_hour(settings, HOUR)
    assert archived is not None and archived.files == [] and archived.provenance["rows"] == 0
    con = lake_connection(settings)
    assert con.sql("SELECT count(*) FROM events").fetchone() == (0,)
    assert [c[0] for c in con.sql("DESCRIBE events").fetchall()][-2:] == ["dt", "hour"]
    con.close()


def test_sensor_view_of_late_landing_files(settings: Settings) -> None:
    [first] = _land(settings, [[_row("a", 1, 2)]])
    assert unarchived_landing_files(settings) == {HOUR: [first]}
    archive_hour(settings, HOUR, progress=lambda _m: None)
    assert unarchived_landing_files(settings) == {}
    paths = _land(settings, [[_row("a", 1, 2)], [_row("late", 3, 90)]])
    assert unarchived_landing_files(settings) == {HOUR: [paths[1]]}
    assert landing_files_of_hour(settings, HOUR) == paths


def test_hour_must_be_the_start_of_an_hour(settings: Settings) -> None:
    with pytest.raises(ValueError, match="start of an hour"):
        archive_hour(settings, HOUR + timedelta(minutes=30))
    naive = archive_hour(settings, HOUR.replace(tzinfo=None), progress=lambda _m: None)
    assert naive.hour == HOUR


def test_sink_log_compaction_deletes_and_uris(tmp_path: Path) -> None:
    log = tmp_path / "sink" / "_spark_metadata"
    log.mkdir(parents=True)

    def entry(path: str, action: str = "add") -> str:
        return json.dumps({"path": path, "action": action})

    (log / "8").write_text("v1\n" + entry("file:///old/never-read.parquet"))
    (log / "9.compact").write_text("v1\n" + entry("file:///l/dt=2026-03-01/hour=09/a%20b.parquet") + "\n"
                                   + entry("file:/l/dt=2026-03-01/hour=09/c.parquet") + "\n")
    (log / "10").write_text("v1\n" + entry("file:///l/dt=2026-03-01/hour=09/c.parquet", "delete"))
    (log / "11").write_text("v1\n" + entry("file:///l/dt=2026-03-01/hour=10/d.parquet"))
    (log / ".11.crc").write_text("")
    assert committed_files(str(tmp_path / "sink")) == ["/l/dt=2026-03-01/hour=09/a b.parquet",
                                                      "/l/dt=2026-03-01/hour=10/d.parquet"]
    assert committed_files(str(tmp_path / "none")) == []
    with pytest.raises(ValueError, match="lake_filesystem"):
        committed_files("s3://bucket/landing")


def test_uri_helpers() -> None:
    assert _from_spark_uri("s3a://b/k/dt=2026-03-01/hour=09/x.parquet") == "s3://b/k/dt=2026-03-01/hour=09/x.parquet"
    assert fs_path("s3://b/k/") == "b/k" and fs_path("s3a://b/k") == "b/k" and fs_path("file:///x/y") == "/x/y"
    assert file_hour("s3://b/dt=2026-03-01/hour=09/x.parquet") == HOUR
    assert file_hour("/l/dt=__HIVE_DEFAULT_PARTITION__/hour=09/x.parquet") is None


def test_an_erased_tenant_hour_stays_out_of_the_archive_however_often_it_is_landed_again(settings: Settings) -> None:
    from common.erasures import record_erasures

    _land(settings, [[_row("a1", 1, 2), _row("b1", 3, 4, tenant="beta"), _row("a2", 5, 6)]])
    archive_hour(settings, HOUR, progress=lambda _: None)
    assert {r["tenant"] for r in _archived(settings)} == {"acme", "beta"}
    record_erasures(settings, {"acme": [(HOUR, HOUR + timedelta(hours=1))]})
    # a late file lands into the erased hour with one more event of each tenant; the hour is archived again
    _land(settings, [[_row("a1", 1, 2), _row("b1", 3, 4, tenant="beta"), _row("a2", 5, 6)],
                     [_row("a3", 7, 90), _row("b2", 8, 90, tenant="beta")]])
    result = archive_hour(settings, HOUR, progress=lambda _: None)
    assert [(r["tenant"], r["event_id"]) for r in _archived(settings)] == [("beta", "b1"), ("beta", "b2")]
    provenance = archived_hour(settings, HOUR).provenance  # type: ignore[union-attr]
    assert provenance["erased_tenants"] == ["acme"] and provenance["rows_erased"] == 3
    assert provenance["duplicates_dropped"] == 0 and result.rows == 2
    assert verify_hour(settings, HOUR) == []
    # the next hour of the same tenant was not erased
    assert record_erasures(settings, {})["acme"] == [(HOUR, HOUR + timedelta(hours=1))]
