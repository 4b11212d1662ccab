"""The lake's warm datasets as Delta Lake tables (delta-rs, ``deltalake`` on PyPI): one place that writes,
lists, deletes and vacuums them, locally or on S3/MinIO through the one lake URI setting.

Why a table format rather than folders plus hand-written manifests: a commit to the table's log is
atomic, so a reader sees an hour either before or after its replacement, never both halves; deletes
and ``vacuum`` erase physically; every engine (DuckDB, pandas/pyarrow, chDB, Spark with Delta) reads
the same log instead of listing folders; and the log keeps history, so "the table as of version N" is
a question any reader can ask.

Tables here (``LAKE_TABLES``): the archive of raw events and the warm hourly rollups (``WARM_TABLES``), at the
folders ``common.lake`` names, partitioned by ``dt`` (DATE) and the hour of day (INTEGER 0-23: ``hour`` for
the archive, ``hour_of_day`` for the rollups, whose own ``hour`` column is the hour's start); the cold raw events
and the cold daily rollups (``COLD_TABLES``), partitioned by ``dt`` only. Each hourly write (each cold day) is ONE
commit that replaces exactly that partition (``replace_partition``, ``replace_day``), carrying its provenance in
the commit's custom metadata (``PROVENANCE_KEY``, a JSON object), so "which landing files, how many rows, what
checksum" is answered from the table's own history.

Traps this module steers around:
* reading through ``DeltaTable.to_pyarrow_table()`` can abort the interpreter at exit (exit code 134);
  readers here take file lists from the log (``partition_files``) or the pyarrow dataset, never that call;
* delta-rs panics in a forked child: processes that use it must be started with ``spawn`` (Dagster's
  multiprocess executor spawns by default; nothing here forks);
* delta-rs writes no deletion vectors, so the log's ``add`` actions are the complete list of live files
  and a reader may read them with any Parquet reader (hive-style ``dt=``/``hour=`` folders included).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from common.lake import (
    archive_path,
    cold_events_path,
    day_sketches_path,
    is_s3,
    month_sketches_path,
    rollups_daily_path,
    rollups_hourly_path,
)
from common.settings import Settings

PROVENANCE_KEY = "lakehouse.provenance"  # commit metadata: JSON of what the commit wrote and from what
PARTITION_KEY = "lakehouse.partition"  # commit metadata: the partition a commit replaced or changed
OPERATION_KEY = "lakehouse.operation"  # archive | recompute | purge | move | migrate
COMMIT_KEY = "lakehouse.commit"  # a unique id per commit: how a writer finds the version it made
# The log (and with it every commit's provenance) is kept this long, longer than the warm horizon (365 days), so
# the provenance of every hour still in a warm table can be read back; delta-rs' default (30 days) would drop it.
TABLE_CONFIGURATION = {"delta.logRetentionDuration": "interval 400 days"}
ROW_GROUP_ROWS = 131_072
TARGET_FILE_BYTES = 64 * 1024 * 1024


# The warm hourly rollups' columns (without the partition columns dt, hour_of_day).
# cold/day_sketches: per tenant, UTC day and (dimension, value) — ("", "") for the tenant's whole day — the day's
# exact events, revenue and distinct users, and a mergeable sketch of its users (common.sketches)
DAY_SKETCHES_SCHEMA = pa.schema([
    ("tenant", pa.string()), ("dimension", pa.string()), ("value", pa.string()),
    ("day", pa.timestamp("us", tz="UTC")), ("events", pa.int64()), ("revenue", pa.float64()),
    ("users", pa.int64()), ("sketch", pa.binary()),
])
# cold/month_sketches: the day sketches of one complete month merged per tenant and (dimension, value) ("day" = the
# month's first midnight); ``revenues`` keeps each day's revenue (an answer adds the days' exactly, as from the day
# rows), ``days`` how many day rows were merged, ``source`` the day sketches' file of the month it was built from
MONTH_SKETCHES_SCHEMA = pa.schema([
    ("tenant", pa.string()), ("dimension", pa.string()), ("value", pa.string()),
    ("day", pa.timestamp("us", tz="UTC")), ("events", pa.int64()), ("revenue", pa.float64()),
    ("revenues", pa.list_(pa.float64())), ("users", pa.int64()), ("days", pa.int64()), ("sketch", pa.binary()),
    ("source", pa.string()),
])
ROLLUPS_HOURLY_SCHEMA = pa.schema([
    ("tenant", pa.string()), ("event", pa.string()), ("country", pa.string()), ("device", pa.string()),
    ("page", pa.string()), ("hour", pa.timestamp("us", tz="UTC")), ("events", pa.int64()),
    ("revenue", pa.float64()), ("user_ids", pa.list_(pa.string())),
])


_LOCATIONS = {"archive/events": archive_path, "warm/rollups_hourly": rollups_hourly_path,
              "cold/events": cold_events_path, "cold/rollups_daily": rollups_daily_path,
              "cold/day_sketches": day_sketches_path, "cold/month_sketches": month_sketches_path}


@dataclass(frozen=True)
class WarmTable:
    """One Delta table of the lake: where it is and which columns partition it (the name is historical: the cold
    tables are ``WarmTable`` objects too, partitioned by day only)."""

    name: str  # archive/events | warm/rollups_hourly | cold/events | cold/rollups_daily | cold/day_sketches
    day_column: str  # dt (DATE)
    hour_column: str | None  # hour | hour_of_day (INTEGER 0-23); None: partitioned by day only (cold)
    # partitioned by month (``month`` = 'YYYY-MM', STRING) instead: the day column is then a column of the files, and a
    # file may hold several days (a complete month compacted into one file); its days are its ``dt`` statistics
    month_column: str | None = None

    def uri(self, settings: Settings) -> str:
        return _LOCATIONS[self.name](settings)

    @property
    def partition_by(self) -> list[str]:
        if self.month_column:
            return [self.month_column]
        return [self.day_column] + ([self.hour_column] if self.hour_column else [])

    def hour_predicate(self, hour: datetime) -> str:
        """The SQL predicate of one hour's partition (fixed column names, formatted dates only)."""
        hour = as_utc_hour(hour)
        if self.hour_column is None:
            raise ValueError(f"{self.name} is partitioned by day; it has no hour partitions")
        return f"{self.day_column} = '{hour:%Y-%m-%d}' AND {self.hour_column} = {hour.hour}"

    def day_predicate(self, day: date) -> str:
        if self.month_column:  # the month prunes the partition, the day the rows (and files, by their statistics)
            return f"{self.month_column} = '{month_label(day)}' AND {self.day_column} = '{day.isoformat()}'"
        return f"{self.day_column} = '{day.isoformat()}'"

    def month_predicate(self, month: str) -> str:
        if not self.month_column:
            raise ValueError(f"{self.name} is not partitioned by month")
        return f"{self.month_column} = '{month}'"


ARCHIVE_TABLE = WarmTable("archive/events", "dt", "hour")
ROLLUPS_HOURLY_TABLE = WarmTable("warm/rollups_hourly", "dt", "hour_of_day")
COLD_EVENTS_TABLE = WarmTable("cold/events", "dt", None)
COLD_ROLLUPS_DAILY_TABLE = WarmTable("cold/rollups_daily", "dt", None)
WARM_TABLES = {t.name: t for t in (ARCHIVE_TABLE, ROLLUPS_HOURLY_TABLE)}
COLD_TABLES = {t.name: t for t in (COLD_EVENTS_TABLE, COLD_ROLLUPS_DAILY_TABLE)}
# Derived from the daily rollups, day by day, partitioned by month (a complete month is compacted into one file:
# storage_tiers.tiers.day_sketches); never migrated from folders: it has no older folder layout
DAY_SKETCHES_TABLE = WarmTable("cold/day_sketches", "dt", None, month_column="month")
# The day sketches of each complete month merged (storage_tiers.tiers.month_sketches), one file per month
MONTH_SKETCHES_TABLE = WarmTable("cold/month_sketches", "dt", None, month_column="month")
# Every Delta table of the lake (what table maintenance walks).
LAKE_TABLES = {**WARM_TABLES, **COLD_TABLES, DAY_SKETCHES_TABLE.name: DAY_SKETCHES_TABLE,
               MONTH_SKETCHES_TABLE.name: MONTH_SKETCHES_TABLE}


def as_utc_hour(hour: datetime) -> datetime:
    """An hour as an aware UTC datetime (naive means UTC, as Dagster's partition keys are)."""
    return hour.replace(tzinfo=UTC) if hour.tzinfo is None else hour.astimezone(UTC)


def month_label(day: date) -> str:
    """``YYYY-MM``: the month partition value of a day (tables partitioned by month)."""
    return f"{day.year:04d}-{day.month:02d}"


def month_partition_label(day: date) -> str:
    """``month=YYYY-MM``: how a month of a table partitioned by month is named in audit records and commit metadata
    (a commit that rewrote the whole month: its provenance holds each day's under ``days``)."""
    return f"month={month_label(day)}"


def day_label(day: date) -> str:
    """``dt=YYYY-MM-DD``: how a day of a cold table is named in audit records and commit metadata."""
    return f"dt={day.isoformat()}"


def partition_label(hour: datetime) -> str:
    """``dt=YYYY-MM-DD/hour=HH``: how an hour is named in audit records and commit metadata."""
    return f"dt={as_utc_hour(hour):%Y-%m-%d}/hour={as_utc_hour(hour):%H}"


def storage_options(settings: Settings) -> dict[str, str] | None:
    """delta-rs options for the lake: None locally; on S3 the ``LAKEHOUSE_S3_*`` values.

    Commits on S3 use conditional PUTs (``If-None-Match``, which MinIO and AWS S3 honour), so concurrent
    writers need no lock service: the loser of a race retries on the next version.
    """
    if not is_s3(settings.effective_lake_uri):
        return None
    options = {"AWS_REGION": settings.s3_region, "conditional_put": "etag"}
    endpoint = settings.s3_endpoint.strip()
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"LAKEHOUSE_S3_ENDPOINT {endpoint!r} must look like http(s)://host:port")
        options |= {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": str(parts.scheme == "http").lower(),
                    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false"}
    if settings.s3_access_key:
        options |= {"AWS_ACCESS_KEY_ID": settings.s3_access_key, "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key}
    return options


def table_uri(settings: Settings, table: WarmTable) -> str:
    """The table's URI as delta-rs takes it (``s3://…`` or an absolute local path)."""
    uri = table.uri(settings)
    if is_s3(uri):
        return "s3://" + uri.split("://", 1)[1].rstrip("/")
    from common.lake import fs_path

    return fs_path(uri)


def open_table(settings: Settings, table: WarmTable, version: int | str | datetime | None = None) -> Any | None:
    """The ``DeltaTable`` (at its newest version, or as of ``version``: a number, an ISO time or a datetime),
    or None when the table was never written."""
    from deltalake import DeltaTable

    uri, options = table_uri(settings, table), storage_options(settings)
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return None
    delta = DeltaTable(uri, storage_options=options)
    if version is not None:
        delta.load_as_version(version)
    return delta


def commit_metadata(operation: str, partition: str, provenance: dict[str, Any]) -> dict[str, str]:
    import uuid

    return {OPERATION_KEY: operation, PARTITION_KEY: partition, COMMIT_KEY: uuid.uuid4().hex,
            PROVENANCE_KEY: json.dumps(provenance, sort_keys=True, default=str)}


def committed_version(settings: Settings, table: WarmTable, metadata: dict[str, str]) -> int:
    """The version of the commit that carried ``metadata``, read from the log's own files (``<version>.json``),
    newest first: other writers may have committed after it, and a history read while they do can number
    commits from a stale snapshot."""
    from common.lake import fs_path, lake_filesystem

    filesystem = lake_filesystem(settings)
    log = f"{fs_path(table.uri(settings))}/_delta_log"
    delta = open_table(settings, table)
    newest = int(delta.version()) if delta is not None else 0
    for version in range(newest, -1, -1):
        try:
            with filesystem.open_input_stream(f"{log}/{version:020d}.json") as stream:
                text = stream.read().decode("utf-8")
        except FileNotFoundError:
            continue
        if metadata[COMMIT_KEY] in text:
            return version
    raise RuntimeError(f"the commit {metadata[COMMIT_KEY]} is not in {table.name}'s log")


def commit_info(settings: Settings, table: WarmTable, version: int) -> dict[str, Any] | None:
    """The ``commitInfo`` of one version, read from its commit file in the log (operation, metrics, the
    lakehouse keys), or None when the file is gone (cleaned up past the log retention) or holds none."""
    from common.lake import fs_path, lake_filesystem

    path = f"{fs_path(table.uri(settings))}/_delta_log/{int(version):020d}.json"
    try:
        with lake_filesystem(settings).open_input_stream(path) as stream:
            lines = stream.read().decode("utf-8").splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        if line.strip():
            info = json.loads(line).get("commitInfo")
            if info is not None:
                return info
    return None


# Raw events' columns written without a dictionary: the event-time instants (DELTA_BINARY_PACKED: sorted within
# tenant and event, so the deltas are small; Delta stores them in µs, which a dictionary of distinct values
# compresses badly) and the event ids (all distinct: a dictionary only adds its page). Measured on a day of the
# tier bench's events (56k rows): 1.77 MB against 2.35 MB with delta-rs' defaults and 1.98 MB for the same rows
# written by pyarrow before the tables.
RAW_EVENT_TABLES = ("archive/events", "cold/events")


def writer_properties(table: WarmTable | None = None) -> Any:
    from deltalake import ColumnProperties, WriterProperties

    columns = None
    if table is not None and table.name in RAW_EVENT_TABLES:
        instants = ColumnProperties(dictionary_enabled=False, encoding="DELTA_BINARY_PACKED")
        columns = {"timestamp": instants, "received_at": instants,
                   "event_id": ColumnProperties(dictionary_enabled=False)}
    return WriterProperties(compression="ZSTD", max_row_group_size=ROW_GROUP_ROWS, column_properties=columns)


def with_partition_columns(data: pa.Table, table: WarmTable, hour: datetime) -> pa.Table:
    """``data`` with the table's partition columns set to ``hour``'s values (its day's, for a cold table)."""
    hour = as_utc_hour(hour)
    n = data.num_rows
    data = data.drop_columns([c for c in {*table.partition_by, table.day_column} if c in data.column_names])
    data = data.append_column(table.day_column, pa.array([hour.date()] * n, pa.date32()))
    if table.month_column:
        return data.append_column(table.month_column, pa.array([month_label(hour.date())] * n, pa.string()))
    if table.hour_column is None:
        return data
    return data.append_column(table.hour_column, pa.array([hour.hour] * n, pa.int32()))


def replace_partition(
    settings: Settings, table: WarmTable, hour: datetime, data: pa.Table | pa.RecordBatchReader,
    operation: str, provenance: dict[str, Any],
) -> int:
    """Replace one hour of ``table`` by ``data`` (which carries the partition columns) in ONE commit.

    Readers see the old hour or the new one, never a mix; an empty ``data`` still commits (the hour is
    then empty, and its provenance says why). Returns the new table version.

    The rows are handed over as one contiguous batch: delta-rs writes a single batch in order (files and
    row groups follow it), where several batches may be written interleaved, which would undo the
    archive's sort (readers skip row groups by tenant and event).
    """

    if isinstance(data, pa.Table):
        data = data.combine_chunks()

    metadata = commit_metadata(operation, partition_label(hour), provenance)
    return _write(settings, table, data, metadata, mode="overwrite", predicate=table.hour_predicate(hour))


def replace_day(settings: Settings, table: WarmTable, day: date, data: pa.Table, operation: str,
                provenance: dict[str, Any]) -> int:
    """Replace one day of a day-partitioned (cold) table by ``data`` in ONE commit; returns the new version.

    ``data`` gets its ``dt`` column here. The rows are written in the order given (one contiguous batch), so a
    day sorted by the caller stays sorted in its file.
    """
    data = with_partition_columns(data, table, datetime(day.year, day.month, day.day, tzinfo=UTC)).combine_chunks()
    metadata = commit_metadata(operation, day_label(day), provenance)
    return _write(settings, table, data, metadata, mode="overwrite", predicate=table.day_predicate(day))


def replace_month(settings: Settings, delta: Any, table: WarmTable, month: str, data: pa.Table, operation: str,
                  provenance: dict[str, Any]) -> int:
    """Replace one month (``YYYY-MM``) of a table partitioned by month by ``data`` (rows with their day column) in ONE
    commit labelled ``month=YYYY-MM`` on the version ``data`` was read from (``delta``); returns the new version.

    Not written again on a lost race (``CommitFailedError`` is raised): ``data`` was derived from that version, and a
    commit in between (a day rebuilt) would be undone by it. The rows are written in the order given."""
    from deltalake import CommitProperties, write_deltalake

    data = data.drop_columns([c for c in (table.month_column,) if c and c in data.column_names])
    data = data.append_column(table.month_column, pa.array([month] * data.num_rows, pa.string())).combine_chunks()
    metadata = commit_metadata(operation, f"month={month}", provenance)
    write_deltalake(delta, data, partition_by=table.partition_by, mode="overwrite",
                    predicate=table.month_predicate(month), storage_options=storage_options(settings),
                    writer_properties=writer_properties(table), target_file_size=TARGET_FILE_BYTES,
                    commit_properties=CommitProperties(custom_metadata=metadata, max_commit_retries=50))
    return int(delta.version())


def write_month(settings: Settings, table: WarmTable, month: str, data: pa.Table, operation: str,
                provenance: dict[str, Any]) -> int:
    """Replace one month (``YYYY-MM``) of a table partitioned by month by ``data`` (rows with the partition columns;
    none: the month's rows go) in one commit labelled ``month=YYYY-MM``, creating the table if needed; its version.
    For derived data written from what it is derived from now (written again on a lost commit race)."""
    return _write(settings, table, data, commit_metadata(operation, f"month={month}", provenance), mode="overwrite",
                  predicate=table.month_predicate(month))


def _version_of(settings: Settings, table: WarmTable, delta: Any | None, metadata: dict[str, str]) -> int:
    """The version a write just committed: the written DeltaTable object moves to its own commit's version
    (the table's newest version may already be another writer's); a table created by this write is looked up."""
    return int(delta.version()) if delta is not None else committed_version(settings, table, metadata)


WRITE_ATTEMPTS = 5
_ACTIONS: dict[tuple[str, int], pa.Table] = {}
_ACTIONS_KEPT = 16


def append_rows(settings: Settings, table: WarmTable, data: pa.Table, operation: str,
                provenance: dict[str, Any]) -> int:
    """Add rows (any hours; they carry the partition columns) to ``table`` in one commit, replacing nothing.

    For loading a lake that other writers share (a migration of many hours at once, test fixtures); the
    batch layer replaces whole hours instead (``replace_partition``). Returns the new version.
    """

    return _write(settings, table, data, commit_metadata(operation, "", provenance), mode="append", predicate=None)


def _write(settings: Settings, table: WarmTable, data: Any, metadata: dict[str, str], mode: str,
           predicate: str | None) -> int:
    """One commit of ``data``; returns its version. Concurrent commits retry on the next version inside
    delta-rs; the conflicts it does not retry (two writers racing to create the table, a commit that lost
    its race more often than delta-rs retries) are written again on the table as it is then: a failed
    commit wrote nothing, and every write here replaces whole partitions or appends, so writing again is safe."""
    from deltalake import CommitProperties, write_deltalake
    from deltalake.exceptions import CommitFailedError

    for attempt in range(WRITE_ATTEMPTS):
        delta = open_table(settings, table)
        try:
            write_deltalake(
                delta if delta is not None else table_uri(settings, table), data, partition_by=table.partition_by,
                mode=mode, predicate=predicate, storage_options=storage_options(settings),
                writer_properties=writer_properties(table), target_file_size=TARGET_FILE_BYTES,
                configuration=TABLE_CONFIGURATION,
                commit_properties=CommitProperties(custom_metadata=metadata, max_commit_retries=50),
            )
        except CommitFailedError as error:
            if attempt == WRITE_ATTEMPTS - 1:
                raise CommitFailedError(f"{error} (written {WRITE_ATTEMPTS} times, each lost its commit race)") \
                    from None
            time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
            continue
        return _version_of(settings, table, delta, metadata)
    raise AssertionError("unreachable")


def add_actions(delta: Any) -> pa.Table:
    """The live files of a table version with their size, rows, statistics and partition values.

    Kept per (table, version) for a few versions: a version never changes, and the API's reader asks
    for the same version's files on every query until the next commit.
    """
    key = (str(delta.table_uri), int(delta.version()))
    cached = _ACTIONS.get(key)
    if cached is None:
        cached = pa.table(delta.get_add_actions(flatten=True))
        if len(_ACTIONS) >= _ACTIONS_KEPT:
            _ACTIONS.pop(next(iter(_ACTIONS)))
        _ACTIONS[key] = cached
    return cached


def partition_files(settings: Settings, table: WarmTable, hours: Iterable[datetime] | None = None,
                    days: tuple[date, date] | None = None, delta: Any | None = None) -> list[str]:
    """URIs of the live data files of some hours (or a day range, or everything), from the table's log.

    No folder is listed: the log is the truth. Sorted by path, i.e. by partition then file name.
    """
    delta = delta if delta is not None else open_table(settings, table)
    if delta is None:
        return []
    actions = add_actions(delta)
    keep = _partition_mask(actions, table, hours, days)
    paths = actions.filter(keep)["path"].to_pylist() if keep is not None else actions["path"].to_pylist()
    root = table_uri(settings, table).rstrip("/")
    return sorted(p if "://" in p or p.startswith("/") else f"{root}/{p}" for p in paths)


def _partition_mask(actions: pa.Table, table: WarmTable, hours: Iterable[datetime] | None,
                    days: tuple[date, date] | None) -> pa.Array | None:
    import pyarrow.compute as pc

    if table.month_column:  # a file holds the days of its statistics: keep the files overlapping the days
        first, last = file_days(actions, table)
        if days is not None:
            return pc.and_(pc.less_equal(first, pa.scalar(days[1], pa.date32())),
                           pc.greater_equal(last, pa.scalar(days[0], pa.date32())))
        if hours is None:
            return None
        wanted = sorted({as_utc_hour(h).date() for h in hours})
        return pa.array([any(lo <= d <= hi for d in wanted) for lo, hi in
                         zip(first.to_pylist(), last.to_pylist(), strict=True)], pa.bool_())
    day_values = pc.cast(actions[f"partition.{table.day_column}"], pa.date32())
    if days is not None:
        return pc.and_(pc.greater_equal(day_values, pa.scalar(days[0], pa.date32())),
                       pc.less_equal(day_values, pa.scalar(days[1], pa.date32())))
    if hours is None:
        return None
    if table.hour_column is None:
        wanted_days = pa.array(sorted({as_utc_hour(h).date() for h in hours}), pa.date32())
        return pc.is_in(day_values, value_set=wanted_days)
    wanted = {(as_utc_hour(h).date(), as_utc_hour(h).hour) for h in hours}
    hour_values = actions[f"partition.{table.hour_column}"].to_pylist()
    return pa.array([(d, h) in wanted for d, h in zip(day_values.to_pylist(), hour_values, strict=True)])


def file_days(actions: pa.Table, table: WarmTable) -> tuple[pa.Array, pa.Array]:
    """The first and last day (DATE) each live file holds: its partition's day, or, in a table partitioned by month,
    its ``dt`` statistics (the whole month when a file has none)."""
    import pyarrow.compute as pc

    if not table.month_column or f"partition.{table.month_column}" not in actions.column_names:
        # (a table partitioned by day, or a month table still in its former day layout: see day_sketches.migrate)
        days = pc.cast(actions[f"partition.{table.day_column}"], pa.date32())
        return days, days
    months = actions[f"partition.{table.month_column}"].to_pylist()
    starts = [date.fromisoformat(f"{m}-01") for m in months]
    ends = [(s.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1) for s in starts]
    lows = actions[f"min.{table.day_column}"].to_pylist() if f"min.{table.day_column}" in actions.column_names \
        else [None] * len(starts)
    highs = actions[f"max.{table.day_column}"].to_pylist() if f"max.{table.day_column}" in actions.column_names \
        else [None] * len(starts)
    return (pa.array([lo or s for lo, s in zip(lows, starts, strict=True)], pa.date32()),
            pa.array([hi or e for hi, e in zip(highs, ends, strict=True)], pa.date32()))


def partition_stats(delta: Any, table: WarmTable) -> dict[datetime, dict[str, int]]:
    """Rows, bytes and files per hour (per day, keyed by its midnight, for a cold table) of the current version,
    from the log's add actions (no data read). Not for a table partitioned by month (a file holds several days)."""
    if table.month_column:
        raise ValueError(f"{table.name} is partitioned by month: read its days from its files (file_days)")
    actions = add_actions(delta)
    out: dict[datetime, dict[str, int]] = {}
    days = actions[f"partition.{table.day_column}"].to_pylist()
    hours = (actions[f"partition.{table.hour_column}"].to_pylist() if table.hour_column
             else [0] * actions.num_rows)
    for day, hour, rows, size in zip(days, hours, actions["num_records"].to_pylist(),
                                     actions["size_bytes"].to_pylist(), strict=True):
        day = day if isinstance(day, date) else date.fromisoformat(str(day))
        key = datetime(day.year, day.month, day.day, int(hour), tzinfo=UTC)
        stat = out.setdefault(key, {"rows": 0, "bytes": 0, "files": 0})
        stat["rows"] += int(rows or 0)
        stat["bytes"] += int(size)
        stat["files"] += 1
    return dict(sorted(out.items()))


def newest_partition_end(delta: Any, table: WarmTable) -> datetime | None:
    """The end of the newest hour (of the newest day, for a cold table) with a live file, from the log's add
    actions (no data read); None for a table without files. An hour archived empty has no file: it does not
    count."""
    import pyarrow.compute as pc

    actions = add_actions(delta)
    if actions.num_rows == 0:
        return None
    days = pc.cast(actions[f"partition.{table.day_column}"], pa.date32())
    newest = pc.max(days).as_py()
    midnight = datetime(newest.year, newest.month, newest.day, tzinfo=UTC)
    if table.hour_column is None:
        return midnight + timedelta(days=1)
    hours = actions.filter(pc.equal(days, pa.scalar(newest, pa.date32())))[f"partition.{table.hour_column}"]
    return midnight + timedelta(hours=max(int(h) for h in hours.to_pylist()) + 1)


def hour_provenance(settings: Settings, table: WarmTable, hours: Iterable[datetime],
                    delta: Any | None = None) -> dict[datetime, dict[str, Any]]:
    """The newest commit's provenance of each of ``hours`` that any commit wrote (with ``version`` and
    ``operation`` added), read from the table's history newest first.

    A commit touching hour H is made after H began (events are archived after they happen), so the walk
    stops at commits older than the earliest hour asked for: a sensor asking about recent hours reads
    recent commits only. An hour missing from the answer was never written.
    """
    wanted = {partition_label(h): as_utc_hour(h) for h in hours}
    if not wanted:
        return {}
    delta = delta if delta is not None else open_table(settings, table)
    if delta is None:
        return {}
    oldest = min(wanted.values()) - timedelta(days=1)
    found: dict[datetime, dict[str, Any]] = {}
    limit, seen = 64, 0
    while True:
        commits = delta.history(limit)
        for commit in commits[seen:]:
            label = commit.get(PARTITION_KEY)
            if label in wanted and wanted[label] not in found and PROVENANCE_KEY in commit:
                found[wanted[label]] = {**json.loads(commit[PROVENANCE_KEY]), "version": commit.get("version"),
                                        "operation": commit.get(OPERATION_KEY)}
            stamp = commit.get("timestamp")
            if len(found) == len(wanted) or (stamp is not None and
                                             datetime.fromtimestamp(stamp / 1000, UTC) < oldest):
                return found
        if len(commits) < limit:
            return found
        seen, limit = len(commits), limit * 8


def newest_commits(delta: Any) -> dict[str, dict[str, Any]]:
    """Per partition (``dt=…/hour=…``), the newest commit that named it. Reads the whole retained history."""
    newest: dict[str, dict[str, Any]] = {}
    for commit in delta.history():  # newest first
        label = commit.get(PARTITION_KEY)
        if label and label not in newest:
            newest[label] = commit
    return newest


def newest_commit_of(delta: Any, label: str | tuple[str, ...]) -> dict[str, Any] | None:
    """The newest commit that named the partition ``label`` (``dt=…`` or ``dt=…/hour=…``; or any of several labels),
    its provenance parsed into ``provenance``; None when no retained commit did. Reads the history newest first, in
    growing pages, so a recently written partition costs a few commits."""
    labels = (label,) if isinstance(label, str) else label
    limit, seen = 64, 0
    while True:
        commits = delta.history(limit)
        for commit in commits[seen:]:
            if commit.get(PARTITION_KEY) in labels:
                provenance = json.loads(commit[PROVENANCE_KEY]) if PROVENANCE_KEY in commit else {}
                return {**commit, "provenance": provenance}
        if len(commits) < limit:
            return None
        seen, limit = len(commits), limit * 8


def empty_hours(delta: Any) -> list[datetime]:
    """Hours whose newest commit wrote them empty (an archive run of an hour without events): the log's add
    actions cannot show them, its history can. Reads the whole retained history."""
    out = []
    for label, commit in newest_commits(delta).items():
        if commit.get(OPERATION_KEY) not in ("archive", "recompute") or PROVENANCE_KEY not in commit:
            continue
        if int(json.loads(commit[PROVENANCE_KEY]).get("rows", -1)) == 0:
            out.append(datetime.strptime(label, "dt=%Y-%m-%d/hour=%H").replace(tzinfo=UTC))
    return sorted(out)


def delete_rows(settings: Settings, table: WarmTable, predicate: str, operation: str, partition: str,
                provenance: dict[str, Any], delta: Any | None = None) -> dict[str, Any]:
    """Delete the rows matching ``predicate`` in one commit; returns delta-rs' metrics plus ``version``.

    The files that held them stay on storage (readable by time travel) until ``vacuum`` removes them.
    """
    from deltalake import CommitProperties

    delta = delta if delta is not None else open_table(settings, table)
    if delta is None:
        return {"num_deleted_rows": 0, "version": None}
    metadata = commit_metadata(operation, partition, provenance)
    metrics = delta.delete(predicate, writer_properties=writer_properties(table), commit_properties=CommitProperties(
        custom_metadata=metadata, max_commit_retries=50))
    return {**metrics, "version": int(delta.version())}


def vacuum(settings: Settings, table: WarmTable, retain: timedelta, delta: Any | None = None) -> list[str]:
    """Physically delete files no version younger than ``retain`` needs; returns the removed files.

    ``retain`` 0 erases everything the newest version does not read (what an erasure needs); the usual
    window keeps time travel to recent versions working.
    """
    delta = delta if delta is not None else open_table(settings, table)
    if delta is None:
        return []
    hours = max(0, int(retain.total_seconds() // 3600))
    return list(delta.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=False))
