"""Compaction of the landing area's files of one hour into the raw events archive, a Delta Lake table.

The stream lands every parsed event (duplicates and late events too) as many small Parquet files per
hour. ``archive_hour`` turns one hour of them into the archive: deduplicated by ``(tenant, event_id)``, sorted by
``tenant, event, timestamp`` (the order dashboards filter by, so readers skip row groups), zstd
Parquet in row groups of 131,072 rows, with DuckDB doing the work (local folder or S3 alike, through its
httpfs extension installed from PyPI, never downloaded) and delta-rs committing it.

Layout and reader contract
--------------------------
``<lake>/archive/events`` (``common.lake.archive_path``) is a Delta table (``common.lake_tables.ARCHIVE_TABLE``)
partitioned by ``dt`` (DATE) and ``hour`` (INTEGER 0-23). Columns are the event contract's
(``common.events.EVENT_ARROW_SCHEMA``: tenant, event, timestamp, event_id, user_id, page, country,
device, revenue, properties, received_at; instants are UTC, stored as microseconds by Delta) plus the
two partition columns.

Each run replaces its hour in ONE commit (``write_deltalake(mode="overwrite", predicate="dt = … AND
hour = …")``), so every reader of the table (DuckDB ``delta_scan`` or the log's file list, pyarrow,
pandas, Spark, chDB) sees the hour before or after, never both and never half. The commit carries the
hour's provenance in its custom metadata (``common.lake_tables.PROVENANCE_KEY``): rows, bytes, event-time
range, content checksum and its method, the landing files consumed, landing rows, duplicates dropped,
rows outside the hour or without an event id, rows left out because a purge erased their tenant's hour
(``common.erasures``), the run id and the tools. ``archived_hour`` reads it back
with the live files of the hour. An hour without any landing file is committed empty (``rows`` 0).

Idempotence: the archived rows are a function of the committed landing files alone (duplicates are
resolved by earliest ``received_at``, then Kafka partition/offset, then content; the sort ends with
``event_id`` so it is total), so re-running an hour with the same landing files yields the same rows and
the same ``checksum``: sha256 over the md5 of each row's content (``sql/duckdb/macros.sql``) in archive
order, plus the row count. It does not depend on file names, file boundaries or Parquet bytes, so
"re-running changed nothing" is checked by comparing checksums, and ``verify_hour`` recomputes it from
the table's live files alone.

Two runs of the same hour may overlap without harm: each is one commit, the later one wins whole
(the Dagster asset still runs one run per hour, which saves the work).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import metadata
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from common.erasures import erased_tenants, read_erasures
from common.events import EVENT_ARROW_SCHEMA, format_optional_ts
from common.lake import committed_files, file_hour, fs_path, hour_partition, lake_filesystem, landing_path
from common.lake_duckdb import duckdb_uri, lake_session
from common.lake_tables import (
    ARCHIVE_TABLE,
    add_actions,
    as_utc_hour,
    hour_provenance,
    open_table,
    replace_partition,
    table_uri,
    with_partition_columns,
)
from common.settings import Settings
from common.sql_files import sql_file

ARCHIVE_SCHEMA = EVENT_ARROW_SCHEMA
# What the table's data files hold: Delta stores instants in microseconds (the values stay milliseconds).
ARCHIVE_FILE_SCHEMA = pa.schema([pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type)
                                 else f for f in ARCHIVE_SCHEMA])
TABLE_SCHEMA = ARCHIVE_SCHEMA.append(pa.field("dt", pa.date32())).append(pa.field("hour", pa.int32()))
SORT_KEY = ("tenant", "event", "timestamp", "event_id")
ROW_GROUP_ROWS = 131_072  # readers skip row groups by tenant/event statistics; ~3 MB zstd of clickstream rows
COMPRESSION = "zstd"
PROVENANCE_FORMAT = "lakehouse.archive.provenance/2"
CHECKSUM_VERSION = "lakehouse.archive.events.content/1"
CHECKSUM_METHOD = (
    "sha256 of 'lakehouse.archive.events.content/1\\n', then each row's archive_row_digest "
    "(sql/duckdb/macros.sql: md5 hex of the row as a JSON array of text) in archive order "
    "(tenant, event, timestamp, event_id), then '\\nrows=<n>'"
)
TOOL_NAME = "lakehouse.batch.archive"


@dataclass
class ArchiveResult:
    hour: datetime
    rows: int  # distinct events archived
    bytes: int
    files: list[str]  # the hour's live data files (URIs) after the commit
    landing_files: list[str]  # committed landing files consumed
    landing_rows: int  # rows in those landing files (duplicates included)
    min_event_time: datetime | None
    max_event_time: datetime | None
    checksum: str
    version: int  # the archive table's version that holds this hour
    table: str  # URI of the archive table
    extra: dict = field(default_factory=dict)


@dataclass
class ArchivedHour:
    """One archived hour as the table holds it now: its live files and the provenance of its last commit."""

    hour: datetime
    files: list[str]
    rows: int  # rows of the live files (from the log)
    bytes: int
    provenance: dict[str, Any]  # rows, checksum, landing_files, … as committed; version and operation added
    sizes: dict[str, int] = field(default_factory=dict)  # file URI → bytes, as the log records them


# --------------------------------------------------------------------------------------------- DuckDB


def archive_session(settings: Settings, temp_dir: str | None = None) -> duckdb.DuckDBPyConnection:
    """A lake session (``common.lake_duckdb.lake_session``: UTC, S3 through httpfs, no downloads)
    with the archive's macros; ``temp_dir`` is where a large hour's sort spills."""
    con = lake_session(settings, temp_dir=temp_dir)
    try:
        con.execute(sql_file("duckdb/macros.sql"))
    except BaseException:
        con.close()
        raise
    return con


def content_checksum(settings: Settings, files: list[str], temp_dir: str | None = None,
                     without: list[str] | None = None) -> tuple[str, int]:
    """The archive's content checksum of the rows in ``files`` (lake URIs) and their row count.

    ``CHECKSUM_METHOD`` says how it is computed (rows in archive order, whatever files hold them); the
    purge computes it this way, ``without`` the tenants it deletes, for the commit that deletes them.
    """
    checksum = hashlib.sha256(CHECKSUM_VERSION.encode() + b"\n")
    rows = 0
    if files:
        con = archive_session(settings, temp_dir=temp_dir)
        try:
            params = {"files": [duckdb_uri(f) for f in files], "without": list(without or [])}
            for batch in con.execute(sql_file("duckdb/archive_digests.sql"), params).to_arrow_reader(ROW_GROUP_ROWS):
                checksum.update("".join(batch.column("row_digest").to_pylist()).encode("ascii"))
                rows += batch.num_rows
        finally:
            con.close()
    checksum.update(f"\nrows={rows}".encode())
    return "sha256:" + checksum.hexdigest(), rows


# ------------------------------------------------------------------------------------------- writing


class _HourRows:
    """The archive's rows of one hour as they stream from DuckDB to delta-rs: the content checksum and the
    event-time range are computed on the way, the row digests dropped and the partition columns added."""

    def __init__(self, hour: datetime) -> None:
        self.hour = hour
        self.rows = 0
        self.low: datetime | None = None
        self.high: datetime | None = None
        self._checksum = hashlib.sha256(CHECKSUM_VERSION.encode() + b"\n")

    def batches(self, reader: pa.RecordBatchReader | None) -> Iterator[pa.RecordBatch]:
        if reader is None:
            return
        for batch in reader:
            if batch.num_rows == 0:
                continue
            self._checksum.update("".join(batch.column("row_digest").to_pylist()).encode("ascii"))
            table = pa.Table.from_batches([batch]).select(ARCHIVE_SCHEMA.names).cast(ARCHIVE_SCHEMA)
            bounds = pc.min_max(table.column("timestamp"))
            times = [t for t in (self.low, self.high, bounds["min"].as_py(), bounds["max"].as_py()) if t is not None]
            self.low, self.high = (min(times), max(times)) if times else (None, None)
            self.rows += table.num_rows
            yield from with_partition_columns(table, ARCHIVE_TABLE, self.hour).cast(TABLE_SCHEMA).to_batches()

    def reader(self, source: pa.RecordBatchReader | None) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(TABLE_SCHEMA, self.batches(source))

    def checksum(self) -> str:
        final = self._checksum.copy()
        final.update(f"\nrows={self.rows}".encode())
        return "sha256:" + final.hexdigest()


@cache
def tool_version() -> str:
    """The project's version as installed (``pyproject.toml``), recorded in every commit."""
    try:
        return metadata.version("lakehouse")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _hour_start(hour: datetime) -> datetime:
    """The hour as an aware UTC datetime; a naive one is taken as UTC (as Dagster's partition keys are)."""
    hour = as_utc_hour(hour)
    if hour != hour.replace(minute=0, second=0, microsecond=0):
        raise ValueError(f"archive_hour needs the start of an hour, got {hour.isoformat()}")
    return hour


def landing_files_of_hour(settings: Settings, hour: datetime, filesystem: pafs.FileSystem | None = None) -> list[str]:
    """The committed landing files in ``hour``'s folder, sorted (never files of failed micro-batches)."""
    hour = _hour_start(hour)
    filesystem = filesystem or lake_filesystem(settings)
    return sorted(f for f in committed_files(landing_path(settings), filesystem) if file_hour(f) == hour)


def archive_hour(settings: Settings, hour: datetime, progress: Callable[[str], None] = print) -> ArchiveResult:
    """Archive one hour of committed landing files as one commit of the archive table (see module docstring).

    The commit's provenance holds: ``format``, ``dataset``, ``partition``, ``hour`` / ``hour_end``,
    ``run_id``, ``created_at``, ``tool`` (name, version, duckdb, pyarrow, deltalake), ``rows``, ``bytes``,
    ``min_event_time`` / ``max_event_time``, ``checksum`` with ``checksum_method``, ``sort_key``,
    ``compression``, ``landing_files`` (the committed landing files consumed, as
    ``common.lake.landing_files_by_hour`` spells them, so a sensor can spot late ones), ``landing_rows``,
    ``duplicates_dropped``, ``rows_outside_hour``, ``rows_without_event_id``, and ``erased_tenants`` with
    ``rows_erased``: the tenants whose rows of this hour a retention purge erased (``common.erasures``), whose
    landing rows are left out, late ones included.
    """
    import deltalake

    started = time.perf_counter()
    hour = _hour_start(hour)
    filesystem = lake_filesystem(settings)
    partition = hour_partition(hour)
    landing = landing_files_of_hour(settings, hour, filesystem)
    target = table_uri(settings, ARCHIVE_TABLE)
    run_id = uuid.uuid4().hex
    progress(f"archive {partition}: {len(landing)} committed landing file(s) → {target} (run {run_id[:8]})")

    # rows a retention purge erased stay erased, however they reach the landing again (common/erasures.py)
    erased = erased_tenants(read_erasures(settings, filesystem), hour)
    stats = {"landing_rows": 0, "rows_outside_hour": 0, "rows_without_event_id": 0, "rows_erased": 0}
    rows = _HourRows(hour)
    with tempfile.TemporaryDirectory(prefix="lakehouse-archive-") as tmp:
        con = archive_session(settings, temp_dir=tmp) if landing else None
        try:
            source = None
            if con is not None:
                params = {"files": [duckdb_uri(f) for f in landing], "hour_start": hour,
                          "hour_end": hour + timedelta(hours=1), "erased": erased}
                row = con.execute(sql_file("duckdb/archive_landing_stats.sql"), params).fetchone()
                assert row is not None
                stats = dict(zip(stats, (int(v) for v in row), strict=True))
                progress(f"  {stats['landing_rows']:,} landing rows; deduplicating and sorting")
                source = con.execute(sql_file("duckdb/archive_events.sql"), params).to_arrow_reader(ROW_GROUP_ROWS)
            provenance: dict[str, Any] = {
                "format": PROVENANCE_FORMAT, "dataset": "archive/events", "partition": partition,
                "hour": format_optional_ts(hour), "hour_end": format_optional_ts(hour + timedelta(hours=1)),
                "run_id": run_id,
                "tool": {"name": TOOL_NAME, "version": tool_version(), "duckdb": duckdb.__version__,
                         "pyarrow": pa.__version__, "deltalake": deltalake.__version__},
                "checksum_method": CHECKSUM_METHOD, "sort_key": list(SORT_KEY), "compression": COMPRESSION,
                "landing_files": landing, "erased_tenants": erased, **stats,
            }
            version = _commit_hour(settings, hour, rows, source, provenance, tmp)
        finally:
            if con is not None:
                con.close()
    archived = archived_hour(settings, hour)
    assert archived is not None
    seconds = time.perf_counter() - started
    duplicates = provenance["duplicates_dropped"]
    progress(
        f"archive {partition}: committed {rows.rows:,} events in {len(archived.files)} file(s) "
        f"({archived.bytes / 1e6:.1f} MB, {duplicates:,} duplicates dropped) as version {version}, "
        f"{seconds:.1f}s; checksum {rows.checksum()[:19]}…"
    )
    return ArchiveResult(
        hour=hour, rows=rows.rows, bytes=archived.bytes, files=archived.files, landing_files=landing,
        landing_rows=stats["landing_rows"], min_event_time=rows.low, max_event_time=rows.high,
        checksum=rows.checksum(), version=version, table=target,
        extra={"run_id": run_id, "duplicates_dropped": duplicates, "rows_outside_hour": stats["rows_outside_hour"],
               "rows_without_event_id": stats["rows_without_event_id"], "seconds": round(seconds, 3)},
    )


def _commit_hour(settings: Settings, hour: datetime, rows: _HourRows, source: pa.RecordBatchReader | None,
                 provenance: dict[str, Any], staging: str) -> int:
    """Stage the hour's rows in a local Arrow file (memory-mapped, so a large hour does not sit in memory),
    then replace the hour in one commit whose metadata carries the complete provenance, which is known
    only once every row was seen."""
    path = f"{staging}/hour.arrow"
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, TABLE_SCHEMA) as writer:
        for batch in rows.batches(source):
            writer.write_batch(batch)
    provenance.update(
        created_at=format_optional_ts(datetime.now(UTC)), rows=rows.rows, checksum=rows.checksum(),
        min_event_time=format_optional_ts(rows.low), max_event_time=format_optional_ts(rows.high),
        duplicates_dropped=provenance["landing_rows"] - provenance["rows_outside_hour"]
        - provenance["rows_without_event_id"] - provenance["rows_erased"] - rows.rows,
    )
    with pa.memory_map(path) as mapped:
        staged = pa.ipc.open_file(mapped).read_all()
        return replace_partition(settings, ARCHIVE_TABLE, hour, staged, "archive", provenance)


# ------------------------------------------------------------------------------------------- reading


def archived_hour(settings: Settings, hour: datetime, delta: Any | None = None) -> ArchivedHour | None:
    """The hour's live files (from the table's log) and its newest commit's provenance; None if never archived."""
    hour = _hour_start(hour)
    delta = delta if delta is not None else open_table(settings, ARCHIVE_TABLE)
    if delta is None:
        return None
    provenance = hour_provenance(settings, ARCHIVE_TABLE, [hour], delta).get(hour)
    if provenance is None:
        return None
    actions = add_actions(delta)
    mask = pc.and_(pc.equal(pc.cast(actions["partition.dt"], pa.date32()), pa.scalar(hour.date(), pa.date32())),
                   pc.equal(pc.cast(actions["partition.hour"], pa.int64()), hour.hour))
    live = actions.filter(mask)
    root = table_uri(settings, ARCHIVE_TABLE).rstrip("/")
    sizes = {f"{root}/{p}": int(n) for p, n in zip(live["path"].to_pylist(), live["size_bytes"].to_pylist(),
                                                    strict=True)}
    return ArchivedHour(hour, sorted(sizes), int(pc.sum(live["num_records"]).as_py() or 0), sum(sizes.values()),
                        provenance, sizes)


def published_files(settings: Settings, hour: datetime, filesystem: pafs.FileSystem | None = None) -> list[str] | None:
    """URIs of the hour's live data files in the archive table; None if the hour was never archived.

    This is what exact readers (the batch recompute, reconciliation) use instead of globbing.
    """
    archived = archived_hour(settings, hour)
    return None if archived is None else archived.files


def verify_hour(settings: Settings, hour: datetime) -> list[str]:
    """Problems with an archived hour, checked from the table alone; an empty list means it is intact.

    Every live file of the hour must exist with the size the log records, and the rows re-read from
    them must give the row count and content checksum of the hour's newest commit. Suitable for a
    Dagster asset check.
    """
    hour = _hour_start(hour)
    archived = archived_hour(settings, hour)
    if archived is None:
        return [f"{hour_partition(hour)} was never archived (no commit of the archive table wrote it)"]
    filesystem = lake_filesystem(settings)
    problems: list[str] = []
    for path, size in archived.sizes.items():
        info = filesystem.get_file_info(fs_path(path))
        if info.type != pafs.FileType.File:
            problems.append(f"{path} is in the table's log but missing from storage")
        elif info.size != size:
            problems.append(f"{path} holds {info.size} bytes, the log says {size}")
    if problems:
        return problems
    expected = archived.provenance
    with tempfile.TemporaryDirectory(prefix="lakehouse-verify-") as tmp:
        checksum, rows = content_checksum(settings, archived.files, temp_dir=tmp)
    if rows != int(expected.get("rows", -1)):
        problems.append(f"the files hold {rows:,} rows, the hour's last commit says {expected.get('rows')}")
    if checksum != expected.get("checksum"):
        problems.append("the content checksum of the files differs from the hour's last commit")
    return problems
