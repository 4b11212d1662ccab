"""Compaction of the landing area's files of one hour into the raw events archive.

The stream lands every parsed event (duplicates and late events too) as many small Parquet files per
hour. ``archive_hour`` turns one hour of them into the archive: deduplicated by ``(tenant, event_id)``, sorted by
``tenant, event, timestamp`` (the order dashboards filter by, so readers skip row groups), zstd
Parquet in files of about a million rows and row groups of 131,072 rows, with DuckDB doing the work
(local folder or S3 alike, through its httpfs extension installed from PyPI, never downloaded).

Layout and reader contract
--------------------------
``<lake>/archive/events/dt=YYYY-MM-DD/hour=HH/`` (``common.lake.archive_hour_path``) holds:

* ``part-<run id>-NNNNN.zstd.parquet``: the data files of one archive run. Columns are the event
  contract's (``common.events.EVENT_ARROW_SCHEMA``: tenant, event, timestamp, event_id, user_id, page,
  country, device, revenue, properties, received_at; instants are UTC milliseconds); ``dt`` and
  ``hour`` exist only as folder names (Hive partitioning).
* ``_manifest.json``: the publication of the hour. It lists the data files (``files[].path``,
  relative to the folder, with rows, bytes, sha256 and event-time range), the hour's totals, a
  content checksum, the landing files consumed and what wrote it. See ``archive_hour`` for the fields.

The manifest is the truth: a reader that wants exactly the published hour reads only the files its
manifest lists (``published_files``), at any moment. A run writes its data files under new names
first and writes the manifest last, in one atomic step (``os.replace`` of a temporary file locally,
a single PUT on S3), so the manifest switches from one complete version to the next. Only after that
are the previous version's data files deleted. Hence a plain glob over the archive (DuckDB
``read_parquet('<archive>/*/*/*.parquet', hive_partitioning=true)``, ``pyarrow.dataset``, Spark,
pandas) sees exactly one version of every hour whenever no archive run is in progress for it; during
a run of an hour it may briefly see the old and new files of that hour. Files whose names start with
``_`` or ``.`` are never data (Spark, pyarrow and the ``*.parquet`` glob all skip them). An hour
without any landing file is published with an empty manifest (``rows`` 0, no files).

Idempotence: the archived rows are a function of the committed landing files alone (duplicates are
resolved by earliest ``received_at``, then Kafka partition/offset, then content; the sort ends with
``event_id`` so it is total), so re-running an hour with the same landing files yields the same rows in
the same order and the same ``checksum``: sha256 over the md5 of each row's content
(``sql/duckdb/macros.sql``) in archive order, plus the row count. It does not depend on file names,
file boundaries or Parquet bytes, so "re-running changed nothing" is checked by comparing checksums,
and ``verify_hour`` recomputes it from the published files alone.

A run must not overlap another run of the same hour (give the Dagster asset a per-partition
concurrency limit); the deletion step re-reads the manifest and never deletes its files, but two
overlapping runs can still waste work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from common.events import EVENT_ARROW_SCHEMA, format_optional_ts
from common.lake import (
    MANIFEST_NAME,
    archive_hour_path,
    committed_files,
    file_hour,
    fs_path,
    hour_partition,
    lake_filesystem,
    lake_uri,
    landing_path,
    read_manifest,
)
from common.lake_duckdb import duckdb_uri, lake_session
from common.lake_io import publish
from common.settings import Settings
from common.sql_files import sql_file

ARCHIVE_SCHEMA = EVENT_ARROW_SCHEMA
SORT_KEY = ("tenant", "event", "timestamp", "event_id")
ROW_GROUP_ROWS = 131_072  # readers skip row groups by tenant/event statistics; ~3 MB zstd of clickstream rows
ROWS_PER_FILE = 8 * ROW_GROUP_ROWS  # ~1M rows, ~25 MB: few files per hour, still enough to read in parallel
COMPRESSION = "zstd"
MANIFEST_FORMAT = "lakehouse.archive.manifest/1"
CHECKSUM_VERSION = "lakehouse.archive.events.content/1"
CHECKSUM_METHOD = (
    "sha256 of 'lakehouse.archive.events.content/1\\n', then each row's archive_row_digest "
    "(sql/duckdb/macros.sql: md5 hex of the row as a JSON array of text) in archive order, then '\\nrows=<n>'"
)
TOOL_NAME = "lakehouse.batch.archive"
_UPLOAD_CHUNK = 8 * 1024 * 1024


@dataclass
class ArchiveResult:
    hour: datetime
    rows: int  # distinct events archived
    bytes: int
    files: list[str]  # archive data files (URIs) listed in the manifest
    landing_files: list[str]  # committed landing files consumed
    landing_rows: int  # rows in those landing files (duplicates included)
    min_event_time: datetime | None
    max_event_time: datetime | None
    checksum: str
    manifest: str  # URI of the manifest
    extra: dict = field(default_factory=dict)


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


def content_checksum(settings: Settings, files: list[str], temp_dir: str | None = None) -> tuple[str, int]:
    """The archive's content checksum of ``files`` (lake URIs, in stored order) and their row count.

    ``CHECKSUM_METHOD`` says how it is computed; the purge recomputes it this way when it rewrites an hour.
    """
    checksum = hashlib.sha256(CHECKSUM_VERSION.encode() + b"\n")
    rows = 0
    if files:
        con = archive_session(settings, temp_dir=temp_dir)
        try:
            params = {"files": [duckdb_uri(f) for f in files]}
            for batch in con.execute(sql_file("duckdb/archive_digests.sql"), params).to_arrow_reader(ROW_GROUP_ROWS):
                checksum.update("".join(batch.column("row_digest").to_pylist()).encode("ascii"))
                rows += batch.num_rows
        finally:
            con.close()
    checksum.update(f"\nrows={rows}".encode())
    return "sha256:" + checksum.hexdigest(), rows


# ------------------------------------------------------------------------------------------- writing


@dataclass
class _Part:
    name: str
    rows: int
    bytes: int
    sha256: str
    min_event_time: datetime | None
    max_event_time: datetime | None


class _HourWriter:
    """Writes one run's data files of one hour: fixed-size row groups and files, published one by one.

    Each file is written under a staging name (locally a hidden ``.…tmp`` in the hour folder, renamed
    atomically; for S3 a local temporary file, then uploaded to its final key, which S3 makes visible
    only once complete), so no reader ever sees a partial file. The content checksum is computed
    from the row digests as the rows stream past, in archive order.
    """

    def __init__(self, filesystem: pafs.FileSystem, folder: str, run_id: str, staging: Path) -> None:
        self.fs = filesystem
        self.folder = folder  # path inside filesystem
        self.run_id = run_id
        self.staging = staging
        self.local = not isinstance(filesystem, pafs.S3FileSystem)
        self.parts: list[_Part] = []
        self.rows = 0
        self._checksum = hashlib.sha256(CHECKSUM_VERSION.encode() + b"\n")
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None
        self._staged: str | None = None
        self._file_rows = 0
        self._file_min: datetime | None = None
        self._file_max: datetime | None = None
        self._published: list[str] = []

    def write(self, batches: Iterable[pa.RecordBatch], progress: Callable[[str], None]) -> None:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            self._checksum.update("".join(batch.column("row_digest").to_pylist()).encode("ascii"))
            table = pa.Table.from_batches([batch]).drop_columns(["row_digest"]).select(ARCHIVE_SCHEMA.names)
            self._buffer.append(table.cast(ARCHIVE_SCHEMA))
            self._buffered += batch.num_rows
            while self._buffered >= ROW_GROUP_ROWS:
                self._flush_row_group(ROW_GROUP_ROWS, progress)
        if self._buffered:
            self._flush_row_group(self._buffered, progress)
        self._close_file(progress)

    def _flush_row_group(self, rows: int, progress: Callable[[str], None]) -> None:
        table = pa.concat_tables(self._buffer)
        group, rest = table.slice(0, rows), table.slice(rows)
        self._buffer, self._buffered = ([rest] if rest.num_rows else []), rest.num_rows
        writer = self._writer or self._open_file()
        writer.write_table(group, row_group_size=ROW_GROUP_ROWS)
        bounds = pc.min_max(group.column("timestamp"))
        group_times = [bounds["min"].as_py(), bounds["max"].as_py()]
        times = [self._file_min, self._file_max, *(t.astimezone(UTC) for t in group_times if t is not None)]
        times = [t for t in times if t is not None]
        self._file_min, self._file_max = min(times, default=None), max(times, default=None)
        self._file_rows += group.num_rows
        self.rows += group.num_rows
        if self._file_rows >= ROWS_PER_FILE:
            self._close_file(progress)

    def _name(self) -> str:
        return f"part-{self.run_id}-{len(self.parts):05d}.zstd.parquet"

    def _open_file(self) -> pq.ParquetWriter:
        name = self._name()
        if self.local:
            os.makedirs(self.folder, exist_ok=True)
            self._staged = f"{self.folder}/.{name}.tmp"
        else:
            self._staged = str(self.staging / name)
        self._writer = pq.ParquetWriter(
            self._staged, ARCHIVE_SCHEMA, compression=COMPRESSION, write_statistics=True,
            sorting_columns=pq.SortingColumn.from_ordering(ARCHIVE_SCHEMA, [(c, "ascending") for c in SORT_KEY]),
        )
        return self._writer

    def _close_file(self, progress: Callable[[str], None]) -> None:
        if self._writer is None or self._staged is None:
            return
        self._writer.close()
        name, staged = self._name(), self._staged
        final = f"{self.folder}/{name}"
        digest = hashlib.sha256()
        size = 0
        # Recorded before the upload: an interrupted S3 upload may still complete an object (pyarrow
        # finishes the upload when the stream is closed), and abort() must then delete it.
        self._published.append(final)
        with open(staged, "rb") as source:
            if self.local:
                while chunk := source.read(_UPLOAD_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                os.replace(staged, final)
            else:
                with self.fs.open_output_stream(final) as sink:
                    while chunk := source.read(_UPLOAD_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        sink.write(chunk)
                os.remove(staged)
        self.parts.append(_Part(name, self._file_rows, size, digest.hexdigest(), self._file_min, self._file_max))
        progress(f"  wrote {name}: {self._file_rows:,} rows, {size / 1e6:.1f} MB")
        self._writer, self._staged = None, None
        self._file_rows, self._file_min, self._file_max = 0, None, None

    def checksum(self) -> str:
        final = self._checksum.copy()
        final.update(f"\nrows={self.rows}".encode())
        return "sha256:" + final.hexdigest()

    def abort(self) -> None:
        """After a failure: remove this run's staged and already written files (no manifest names them)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):  # best effort: the original error is what matters
                self._writer.close()
        if self._staged is not None and os.path.exists(self._staged):
            os.remove(self._staged)
        for path in self._published:
            with contextlib.suppress(OSError):
                self.fs.delete_file(path)


# ------------------------------------------------------------------------------------------ publish




@cache
def tool_version() -> str:
    """The project's version as installed (``pyproject.toml``), recorded in every manifest."""
    try:
        return metadata.version("lakehouse")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _write_manifest(filesystem: pafs.FileSystem, folder: str, manifest: dict[str, Any]) -> None:
    """The publishing step: the manifest appears whole (one PUT on S3, write-then-rename locally)."""
    publish(filesystem, f"{folder}/{MANIFEST_NAME}", (json.dumps(manifest, indent=2) + "\n").encode())


def _delete_superseded(
    settings: Settings, filesystem: pafs.FileSystem, folder: str, hour: datetime, keep: set[str]
) -> list[str]:
    """Delete the hour's data files that the published manifest does not list (older versions, leftovers).

    The manifest is re-read first, so files it names are never deleted even if another run published
    in the meantime. Only data files (``*.parquet``) and staging leftovers (``.*.tmp``) are touched.
    """
    current = read_manifest(settings, hour, filesystem)
    keep = keep | {f["path"] for f in (current or {}).get("files", [])}
    deleted = []
    for info in filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        name = info.base_name
        if info.type != pafs.FileType.File or name in keep or name == MANIFEST_NAME:
            continue
        if name.endswith(".parquet") or (name.startswith(".") and name.endswith(".tmp")):
            filesystem.delete_file(info.path)
            deleted.append(name)
    return sorted(deleted)


def _hour_start(hour: datetime) -> datetime:
    """The hour as an aware UTC datetime; a naive one is taken as UTC (as Dagster's partition keys are)."""
    hour = hour.replace(tzinfo=UTC) if hour.tzinfo is None else hour.astimezone(UTC)
    if hour != hour.replace(minute=0, second=0, microsecond=0):
        raise ValueError(f"archive_hour needs the start of an hour, got {hour.isoformat()}")
    return hour


def landing_files_of_hour(settings: Settings, hour: datetime, filesystem: pafs.FileSystem | None = None) -> list[str]:
    """The committed landing files in ``hour``'s folder, sorted (never files of failed micro-batches)."""
    hour = _hour_start(hour)
    filesystem = filesystem or lake_filesystem(settings)
    return sorted(f for f in committed_files(landing_path(settings), filesystem) if file_hour(f) == hour)


def archive_hour(settings: Settings, hour: datetime, progress: Callable[[str], None] = print) -> ArchiveResult:
    """Archive one hour of committed landing files and publish it with its manifest (see module docstring).

    The manifest (``_manifest.json``) holds: ``format``, ``dataset``, ``partition``, ``hour`` /
    ``hour_end``, ``run_id``, ``created_at``, ``tool`` (name, version, duckdb, pyarrow), ``rows``,
    ``bytes``, ``min_event_time`` / ``max_event_time``, ``checksum`` with ``checksum_method``,
    ``sort_key``, ``compression``, ``schema``, ``files`` (path relative to the folder, rows, bytes,
    sha256, event-time range, in archive order), ``landing_files`` (the committed landing files
    consumed, as ``common.lake.landing_files_by_hour`` spells them, so a sensor can spot late ones),
    ``landing_rows``, ``duplicates_dropped``, ``rows_outside_hour`` and ``rows_without_event_id``.
    """
    started = time.perf_counter()
    hour = _hour_start(hour)
    filesystem = lake_filesystem(settings)
    partition = hour_partition(hour)
    landing = landing_files_of_hour(settings, hour, filesystem)
    target = archive_hour_path(settings, hour)
    folder = fs_path(target)
    run_id = uuid.uuid4().hex
    progress(f"archive {partition}: {len(landing)} committed landing file(s) → {target} (run {run_id[:8]})")

    stats = {"landing_rows": 0, "rows_outside_hour": 0, "rows_without_event_id": 0}
    with tempfile.TemporaryDirectory(prefix="lakehouse-archive-") as tmp:
        writer = _HourWriter(filesystem, folder, run_id, Path(tmp))
        try:
            if landing:
                con = archive_session(settings, temp_dir=tmp)
                try:
                    params = {"files": [duckdb_uri(f) for f in landing], "hour_start": hour,
                              "hour_end": hour + timedelta(hours=1)}
                    row = con.execute(sql_file("duckdb/archive_landing_stats.sql"), params).fetchone()
                    assert row is not None
                    stats = dict(zip(stats, (int(v) for v in row), strict=True))
                    progress(f"  {stats['landing_rows']:,} landing rows; deduplicating and sorting")
                    reader = con.execute(sql_file("duckdb/archive_events.sql"), params).to_arrow_reader(ROW_GROUP_ROWS)
                    writer.write(reader, progress)
                finally:
                    con.close()
            parts = writer.parts
            checksum = writer.checksum()
            low = min((p.min_event_time for p in parts if p.min_event_time), default=None)
            high = max((p.max_event_time for p in parts if p.max_event_time), default=None)
            manifest: dict[str, Any] = {
                "format": MANIFEST_FORMAT,
                "dataset": "archive/events",
                "partition": partition,
                "hour": format_optional_ts(hour),
                "hour_end": format_optional_ts(hour + timedelta(hours=1)),
                "run_id": run_id,
                "created_at": format_optional_ts(datetime.now(UTC)),
                "tool": {"name": TOOL_NAME, "version": tool_version(), "duckdb": duckdb.__version__,
                         "pyarrow": pa.__version__},
                "rows": writer.rows,
                "bytes": sum(p.bytes for p in parts),
                "min_event_time": format_optional_ts(low),
                "max_event_time": format_optional_ts(high),
                "checksum": checksum,
                "checksum_method": CHECKSUM_METHOD,
                "sort_key": list(SORT_KEY),
                "compression": COMPRESSION,
                "schema": [{"name": f.name, "type": str(f.type)} for f in ARCHIVE_SCHEMA],
                "files": [
                    {"path": p.name, "rows": p.rows, "bytes": p.bytes, "sha256": p.sha256,
                     "min_event_time": format_optional_ts(p.min_event_time),
                     "max_event_time": format_optional_ts(p.max_event_time)}
                    for p in parts
                ],
                "landing_files": landing,
                "landing_rows": stats["landing_rows"],
                "duplicates_dropped": stats["landing_rows"] - stats["rows_outside_hour"]
                - stats["rows_without_event_id"] - writer.rows,
                "rows_outside_hour": stats["rows_outside_hour"],
                "rows_without_event_id": stats["rows_without_event_id"],
            }
            _write_manifest(filesystem, folder, manifest)
        except BaseException:
            writer.abort()
            raise
    deleted = _delete_superseded(settings, filesystem, folder, hour, {p.name for p in parts})
    seconds = time.perf_counter() - started
    progress(
        f"archive {partition}: published {writer.rows:,} events in {len(parts)} file(s) "
        f"({manifest['bytes'] / 1e6:.1f} MB, {manifest['duplicates_dropped']:,} duplicates dropped), "
        f"removed {len(deleted)} superseded file(s), {seconds:.1f}s; checksum {checksum[:19]}…"
    )
    return ArchiveResult(
        hour=hour,
        rows=writer.rows,
        bytes=manifest["bytes"],
        files=[lake_uri(filesystem, f"{folder}/{p.name}") for p in parts],
        landing_files=landing,
        landing_rows=stats["landing_rows"],
        min_event_time=low,
        max_event_time=high,
        checksum=checksum,
        manifest=lake_uri(filesystem, f"{folder}/{MANIFEST_NAME}"),
        extra={
            "run_id": run_id,
            "duplicates_dropped": manifest["duplicates_dropped"],
            "rows_outside_hour": stats["rows_outside_hour"],
            "rows_without_event_id": stats["rows_without_event_id"],
            "deleted_files": deleted,
            "seconds": round(seconds, 3),
        },
    )


# ------------------------------------------------------------------------------------------- reading


def published_files(settings: Settings, hour: datetime, filesystem: pafs.FileSystem | None = None) -> list[str] | None:
    """URIs of the data files the hour's manifest lists, in archive order; None if never archived.

    This is what exact readers (the batch recompute, reconciliation) use instead of globbing.
    """
    filesystem = filesystem or lake_filesystem(settings)
    manifest = read_manifest(settings, hour, filesystem)
    if manifest is None:
        return None
    base = archive_hour_path(settings, _hour_start(hour))
    return [f"{base}/{f['path']}" for f in manifest["files"]]


def verify_hour(settings: Settings, hour: datetime) -> list[str]:
    """Problems with a published hour, checked from the files alone; an empty list means it is intact.

    Checks every listed file exists with its size and sha256, that the rows re-read from the files in
    manifest order give the manifest's row count and content checksum (so also its sort order), and
    that no unlisted data file is left in the folder (a plain glob would see it). Suitable for a
    Dagster asset check.
    """
    hour = _hour_start(hour)
    filesystem = lake_filesystem(settings)
    manifest = read_manifest(settings, hour, filesystem)
    if manifest is None:
        return [f"{hour_partition(hour)} has no manifest: it was never archived"]
    folder = fs_path(archive_hour_path(settings, hour))
    problems: list[str] = []
    for entry in manifest["files"]:
        path = f"{folder}/{entry['path']}"
        digest, size = hashlib.sha256(), 0
        try:
            with filesystem.open_input_stream(path) as stream:
                while chunk := stream.read(_UPLOAD_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            problems.append(f"{entry['path']} is listed in the manifest but missing")
            continue
        if size != entry["bytes"] or digest.hexdigest() != entry["sha256"]:
            problems.append(f"{entry['path']} differs from the manifest (bytes {size} vs {entry['bytes']} or sha256)")
    listed = {f["path"] for f in manifest["files"]}
    extra = [i.base_name for i in filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
             if i.base_name.endswith(".parquet") and i.base_name not in listed]
    if extra:
        problems.append(f"data files not in the manifest (a glob would read them): {sorted(extra)}")
    if problems:
        return problems
    files = [lake_uri(filesystem, f"{folder}/{f['path']}") for f in manifest["files"]]
    with tempfile.TemporaryDirectory(prefix="lakehouse-verify-") as tmp:
        checksum, rows = content_checksum(settings, files, temp_dir=tmp)
    if rows != manifest["rows"]:
        problems.append(f"the files hold {rows:,} rows, the manifest says {manifest['rows']:,}")
    if checksum != manifest["checksum"]:
        problems.append("the content checksum of the files (in stored order) differs from the manifest's")
    return problems

