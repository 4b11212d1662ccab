"""One-time migration of a lake written before the Delta tables: Hive folders of Parquet → the lake's Delta tables.

``lakehouse lake migrate`` runs it. What it moves:

* archive hours ``archive/events/dt=YYYY-MM-DD/hour=HH/`` published by a ``_manifest.json`` (the old
  publish protocol): the files the manifest lists are read, sorted as the archive sorts, and committed
  as that hour of ``ARCHIVE_TABLE`` (one commit, operation ``migrate``, provenance: the old folder, its
  files, the manifest's rows, checksum and landing files). A folder without a manifest was never
  published (or is already the table's own) and is left alone;
* warm hourly rollups ``warm/rollups_hourly/dt=YYYY-MM-DD/hour=HH/*.parquet`` (Spark's output):
  committed as that hour of ``ROLLUPS_HOURLY_TABLE`` (whose partition folders are ``hour_of_day=H``).

Each hour is verified before its old files go: the table's hour must hold the same row count, and for
the archive the same content checksum as the manifest. Only then are the old data files and the
manifest deleted (the manifest last: it is the marker of an hour still to migrate). So the migration is

* idempotent: a migrated hour has no old files left, and a second run finds nothing to do;
* resumable: an interruption leaves each hour either still old (migrated on the next run) or committed
  with its old files still there (committed again with the same content, then cleaned);
* safe next to the batch layer: an hour whose newest table commit is not a migration (the batch layer
  archived or restated it after the upgrade) keeps the table's version; only its old files are removed.

* cold days ``cold/events/dt=YYYY-MM-DD/part-0.parquet`` and ``cold/rollups_daily/dt=…/part-0.parquet``
  published by a ``_manifest.json``: the file is checked against the manifest (sha256, rows), then
  committed as that day of ``COLD_EVENTS_TABLE`` / ``COLD_ROLLUPS_DAILY_TABLE`` (one commit, operation
  ``migrate``) with the manifest's content (sources, rows per tenant and hour) as its provenance, so the
  tier movers see the day as built from the same archive hours and do not rebuild it. Verified by re-reading
  the table's day (rows, content checksum, rows per hour), then the old file and the manifest are deleted.
  A day folder without a manifest was never published and is left alone. The same rules apply:
  idempotent, resumable, and a day the movers or the purge already committed keeps the table's version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow.compute as pc
import pyarrow.fs as pafs

from batch.archive import SORT_KEY, content_checksum
from common.events import EVENT_ARROW_SCHEMA
from common.lake import MANIFEST_NAME, archive_path, fs_path, lake_filesystem, lake_uri, rollups_hourly_path
from common.lake_io import data_files, manifest_of, partition_days, read_bytes, read_tables, sha256
from common.lake_tables import (
    ARCHIVE_TABLE,
    COLD_TABLES,
    OPERATION_KEY,
    ROLLUPS_HOURLY_SCHEMA,
    ROLLUPS_HOURLY_TABLE,
    WarmTable,
    newest_commits,
    open_table,
    partition_label,
    replace_partition,
    with_partition_columns,
)
from common.settings import Settings

_OLD_HOUR = re.compile(r"^hour=(\d{2})$")  # the Hive layout's folders (Delta's are hour=H / hour_of_day=H)


@dataclass
class MigrationReport:
    migrated: list[str] = field(default_factory=list)  # "<dataset> dt=…/hour=…" or "<dataset> dt=…"
    kept_newer: list[str] = field(default_factory=list)  # the table already had a newer version of the hour
    problems: list[str] = field(default_factory=list)  # verification failures: old files kept
    rows: int = 0


def migrate_lake(settings: Settings, dry_run: bool = False,
                 progress: Callable[[str], None] = print) -> MigrationReport:
    """Migrate the archive and the warm hourly rollups (see the module docstring); ``dry_run`` only reports."""
    report = MigrationReport()
    fs = lake_filesystem(settings)
    for table, root in ((ARCHIVE_TABLE, archive_path(settings)), (ROLLUPS_HOURLY_TABLE, rollups_hourly_path(settings))):
        delta = open_table(settings, table)
        newest = newest_commits(delta) if delta is not None else {}
        for hour, folder in _old_hours(fs, root):
            label = f"{table.name} {partition_label(hour)}"
            if table is ARCHIVE_TABLE and manifest_of(fs, folder) is None:
                continue  # migrated already (the table's own folder), or never published in the old layout
            commit = newest.get(partition_label(hour))
            if commit is not None and commit.get(OPERATION_KEY) != "migrate":
                report.kept_newer.append(label)
                if not dry_run:
                    _delete_old(fs, folder, table)
                continue
            if dry_run:
                report.migrated.append(label)
                continue
            problem, rows = _migrate_hour(settings, fs, table, hour, folder)
            if problem:
                report.problems.append(f"{label}: {problem}; old files kept")
                continue
            _delete_old(fs, folder, table)
            report.migrated.append(label)
            report.rows += rows
            progress(f"migrated {label}: {rows:,} rows")
    for table in COLD_TABLES.values():
        _migrate_cold(settings, fs, table, report, dry_run, progress)
    return report


def _migrate_cold(settings: Settings, fs: pafs.FileSystem, table: WarmTable, report: MigrationReport, dry_run: bool,
                  progress: Callable[[str], None]) -> None:
    """The published old cold days of one dataset → days of its Delta table (see the module docstring)."""
    from storage_tiers.tiers.cold_files import (
        COLD_SCHEMAS,
        EVENTS_SORT,
        ROLLUP_KEYS,
        publish_day,
        verify_cold_day,
    )

    root = table.uri(settings)
    delta = open_table(settings, table)
    newest = newest_commits(delta) if delta is not None else {}
    for day in partition_days(fs, root):
        folder = f"{fs_path(root)}/dt={day.isoformat()}"
        manifest = manifest_of(fs, folder)
        if manifest is None:
            continue  # migrated already, or never published
        label = f"{table.name} dt={day}"
        old = f"{folder}/{manifest.get('file', 'part-0.parquet')}"
        commit = newest.get(f"dt={day.isoformat()}")
        if commit is not None and commit.get(OPERATION_KEY) != "migrate":
            report.kept_newer.append(label)
            if not dry_run:
                _delete_cold(fs, folder, old)
            continue
        if dry_run:
            report.migrated.append(label)
            continue
        body = read_bytes(fs, old)
        if body is None:
            report.problems.append(f"{label}: {old} (named by its manifest) is missing; manifest kept")
            continue
        if manifest.get("sha256") and sha256(body) != manifest["sha256"]:
            report.problems.append(f"{label}: {old} differs from its manifest's sha256; old files kept")
            continue
        data = read_tables(fs, [old], COLD_SCHEMAS[table.name])
        assert data is not None
        if data.num_rows != int(manifest.get("rows", data.num_rows)):
            report.problems.append(f"{label}: the file holds {data.num_rows} rows, its manifest {manifest['rows']}; "
                                   "old files kept")
            continue
        extra = {k: manifest[k] for k in ("hour_rows", "events", "purged", "created_at") if k in manifest}
        extra["migrated_from"] = lake_uri(fs, old)
        extra["old_sha256"] = manifest.get("sha256")
        sort_key = EVENTS_SORT if table.name == "cold/events" else ROLLUP_KEYS
        publish_day(settings, table, day, data, sort_key, manifest.get("sources", []), extra,
                    manifest.get("run_id"), operation="migrate")
        problems = verify_cold_day(settings, table, day, fs)
        if problems:
            report.problems += [f"{p}; old files kept" for p in problems]
            continue
        _delete_cold(fs, folder, old)
        report.migrated.append(label)
        report.rows += data.num_rows
        progress(f"migrated {label}: {data.num_rows:,} rows")


def _delete_cold(fs: pafs.FileSystem, folder: str, old: str) -> None:
    """The old day file, then its manifest (the marker of a day still to migrate)."""
    if fs.get_file_info(old).type == pafs.FileType.File:
        fs.delete_file(old)
    if fs.get_file_info(f"{folder}/{MANIFEST_NAME}").type == pafs.FileType.File:
        fs.delete_file(f"{folder}/{MANIFEST_NAME}")


def _old_hours(fs: pafs.FileSystem, root: str) -> list[tuple[datetime, str]]:
    """The Hive layout's hour folders (``hour=HH``, two digits) that still hold old files."""
    out = []
    for day in partition_days(fs, root):
        day_folder = f"{fs_path(root)}/dt={day.isoformat()}"
        for info in fs.get_file_info(pafs.FileSelector(day_folder, allow_not_found=True)):
            match = _OLD_HOUR.match(info.base_name)
            if info.type == pafs.FileType.Directory and match:
                out.append((datetime(day.year, day.month, day.day, int(match[1]), tzinfo=UTC), info.path))
    return sorted(out)


def _old_files(fs: pafs.FileSystem, folder: str, table: WarmTable) -> list[str]:
    """The old layout's data files of a folder: those its manifest lists (archive), or all Parquet (rollups).

    An archive folder ``hour=10``…``hour=23`` is also the Delta table's own folder for that hour, so only the
    manifest's files are old there; the rollups' Delta folders are named ``hour_of_day=``.
    """
    if table is ARCHIVE_TABLE:
        manifest = manifest_of(fs, folder) or {}
        return [f"{folder}/{entry['path']}" for entry in manifest.get("files", [])]
    return data_files(fs, folder)


def _migrate_hour(settings: Settings, fs: pafs.FileSystem, table: WarmTable, hour: datetime,
                  folder: str) -> tuple[str | None, int]:
    files = _old_files(fs, folder, table)
    missing = [f for f in files if fs.get_file_info(f).type != pafs.FileType.File]
    if missing:
        return f"{len(missing)} file(s) its manifest lists are missing", 0
    provenance: dict[str, Any] = {"migrated_from": lake_uri(fs, folder), "files": [f.rsplit("/", 1)[-1] for f in files]}
    if table is ARCHIVE_TABLE:
        manifest = manifest_of(fs, folder) or {}
        data = read_tables(fs, files, EVENT_ARROW_SCHEMA) or EVENT_ARROW_SCHEMA.empty_table()
        data = data.sort_by([(c, "ascending") for c in SORT_KEY])
        provenance |= {k: manifest.get(k) for k in ("rows", "checksum", "checksum_method", "landing_files",
                                                     "landing_rows", "duplicates_dropped", "min_event_time",
                                                     "max_event_time", "run_id", "created_at")}
        expected_rows = int(manifest.get("rows", data.num_rows))
    else:
        data = read_tables(fs, files, ROLLUPS_HOURLY_SCHEMA) or ROLLUPS_HOURLY_SCHEMA.empty_table()
        provenance |= {"rows": data.num_rows, "events": int(pc.sum(data["events"]).as_py() or 0)}
        expected_rows = data.num_rows
    if data.num_rows != expected_rows:
        return f"the old files hold {data.num_rows} rows, the manifest says {expected_rows}", 0
    replace_partition(settings, table, hour, with_partition_columns(data, table, hour), "migrate", provenance)
    return _verify(settings, table, hour, expected_rows, provenance.get("checksum")), data.num_rows


def _verify(settings: Settings, table: WarmTable, hour: datetime, rows: int, checksum: str | None) -> str | None:
    from common.lake_tables import partition_files

    files = partition_files(settings, table, [hour])
    data = read_tables(lake_filesystem(settings), [fs_path(f) for f in files])
    got = 0 if data is None else data.num_rows
    if got != rows:
        return f"the table's hour holds {got} rows after the commit, {rows} expected"
    if table is ARCHIVE_TABLE and checksum:
        recomputed, _rows = content_checksum(settings, files)
        if recomputed != checksum:
            return "the table's hour has another content checksum than the old manifest"
    return None


def _delete_old(fs: pafs.FileSystem, folder: str, table: WarmTable) -> None:
    """The old data files, then the manifest (the marker of an hour still to migrate), then Spark's markers."""
    for path in _old_files(fs, folder, table):
        if fs.get_file_info(path).type == pafs.FileType.File:
            fs.delete_file(path)
    for name in (MANIFEST_NAME, "_SUCCESS"):
        if fs.get_file_info(f"{folder}/{name}").type == pafs.FileType.File:
            fs.delete_file(f"{folder}/{name}")
    if table is ROLLUPS_HOURLY_TABLE:  # the whole old folder: the table's own are named hour_of_day=
        for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
            if info.type == pafs.FileType.File:
                fs.delete_file(info.path)
    if not fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        fs.delete_dir(folder)  # an archive folder hour=00…09 that held only the old files
