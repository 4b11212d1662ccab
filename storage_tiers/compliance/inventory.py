"""What exists in which tier: partitions, rows, bytes and event-time range per dataset × tier.

The audit (``storage_tiers/compliance/audit_report.py``) and the compliance check start from this inventory. It is
collected from metadata only, never by scanning data:

* hot tier (ClickHouse, reached through ``common.hot_store``): ``system.parts`` for rows and bytes of
  the active parts, min/max of the time column per partition (answered from the parts' minmax index),
  ``sql/clickhouse/queries/hot_partitions.sql``;
* warm and cold tiers (the archive, the hourly rollups, the cold events and daily rollups: Delta tables): the
  table's log, i.e. the live files of its newest version with their sizes, row counts and per-file column
  statistics (event-time and tenant ranges), never a listing, so files that a delete or a restatement
  superseded but vacuum has not yet removed are not counted as data. On S3 each live cold file's tags are
  checked. (A folder of plain Parquet, e.g. a lake not yet migrated, is still read by listing it: rows from its
  ``_manifest.json`` when it has one, otherwise from the Parquet footers.)

Where each dataset lives (``LAKE_LOCATIONS``, ``HOT_TABLES``) is the layout agreed for the tiers; the
policy (``storage_tiers/policy.py``) says how long each tier keeps a dataset. A tier that cannot be
read (hot node down, bucket unreachable) is recorded with its error instead of failing the whole
inventory, so a report still shows everything else and says what to fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from common.hot_store import HotStore, HotStoreError
from common.lake import MANIFEST_NAME, fs_path, is_s3, lake_filesystem
from common.lake_tables import (
    ARCHIVE_TABLE,
    COLD_EVENTS_TABLE,
    COLD_ROLLUPS_DAILY_TABLE,
    ROLLUPS_HOURLY_TABLE,
    WarmTable,
    add_actions,
    empty_hours,
    open_table,
    table_uri,
)
from common.settings import Settings
from common.sql_files import fill, sql_file

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
DATASETS = ("events", "rollups_1m", "rollups_hourly", "rollups_daily")
TIERS = ("hot", "warm", "cold")


@dataclass(frozen=True)
class HotTable:
    table: str
    time_column: str


@dataclass(frozen=True)
class LakeLocation:
    path: str  # under the lake root
    grain: str  # "hour" (dt=/hour= folders) or "day" (dt= folders)
    time_columns: tuple[str, ...]  # first one present in a file's schema gives the event-time range


# Where every dataset lives in every tier (the lake paths match common/lake.py and storage_tiers/tiers.yaml).
HOT_TABLES: dict[str, HotTable] = {
    "events": HotTable("events_raw", "timestamp"),
    "rollups_1m": HotTable("rollups_1m", "minute"),
    "rollups_hourly": HotTable("rollups_1h", "hour"),
}
LAKE_LOCATIONS: dict[tuple[str, str], LakeLocation] = {
    ("events", "warm"): LakeLocation("archive/events", "hour", ("timestamp",)),
    ("rollups_hourly", "warm"): LakeLocation("warm/rollups_hourly", "hour", ("hour", "minute")),
    ("events", "cold"): LakeLocation("cold/events", "day", ("timestamp",)),
    ("rollups_daily", "cold"): LakeLocation("cold/rollups_daily", "day", ("day", "dt", "date", "hour")),
}
# The lake locations that are Delta tables: read from their log.
DELTA_TABLES: dict[tuple[str, str], WarmTable] = {
    ("events", "warm"): ARCHIVE_TABLE,
    ("rollups_hourly", "warm"): ROLLUPS_HOURLY_TABLE,
    ("events", "cold"): COLD_EVENTS_TABLE,
    ("rollups_daily", "cold"): COLD_ROLLUPS_DAILY_TABLE,
}


@dataclass(frozen=True)
class DerivedTable:
    """A table derived from a dataset above (a copy or pre-aggregate a query reads instead of it): not inventoried
    partition by partition — it holds nothing its source does not — but listed so an auditor sees where copies of
    the data are and what erases them (``docs/compliance.md``, *Derived tables*)."""

    table: str  # hot table name, or the lake path under the root
    tier: str
    source: str  # what it is derived from
    holds: str
    retention: str
    erased_by: str


# One entry per derived table (add new ones at the end).
DERIVED_TABLES: tuple[DerivedTable, ...] = (
    DerivedTable(
        "rollups_1h_by_day", "hot", "rollups_1h",
        "rollups_1h's rows (per tenant) of closed hours merged per key, one partition per build of a UTC day",
        "as rollups_1h: when the tier mover drops an hour, the day's builds are dropped after 10 minutes",
        "purge: the purged tenants' rows deleted from every build at once, the day built again "
        "(day_rollups.erase/rebuild); mover: day_rollups.moved, superseded builds dropped by day_rollups.collect"),
    DerivedTable(
        "rollups_1h_by_day_marks", "hot", "rollups_1h_by_day",
        "the builds' log: day, state, build id, copied-through hour (no tenant data)",
        "a day's marks go once none of its builds is left, 10 minutes after their last mark (day_rollups.trim_marks)",
        "nothing to erase (no tenant data)"),
    DerivedTable(
        "session_pieces", "hot", "events_raw",
        "per tenant, hour, user and session id: the hour's pieces of sessions (times, counts, event names, pages)",
        "as events_raw: the tier mover's drop of an hour forgets its pieces (session_pieces.forget)",
        "purge: the purged tenants' pieces deleted with their events (session_pieces.forget with tenants)"),
    DerivedTable(
        "session_piece_hours", "hot", "session_pieces",
        "which hours' pieces are built, with which session gap and event count (no tenant data)",
        "an hour's marks go 10 minutes after it was last marked not built: moved out of the hot tier, restated, "
        "written after its build (session_pieces.trim_marks, run by every forget)",
        "nothing to erase (no tenant data)"),
    DerivedTable(
        "cold/day_sketches", "cold", "cold/rollups_daily",
        "per tenant, day and dimension value: exact events and revenue, a HyperLogLog sketch of the users; "
        "a complete month compacted into one file",
        "the cold retention of the daily rollups (the purge judges its days as theirs)",
        "purge: the purged tenants' rows deleted per day (one delete commit, then vacuum); "
        "rebuilt by the movers whenever the day's daily rollups changed"),
    DerivedTable(
        "cold/month_sketches", "cold", "cold/day_sketches",
        "per tenant, complete month and dimension value: the month's day sketches merged (events, each day's "
        "revenue, a merged HyperLogLog sketch of the users)",
        "as the day sketches: merged again from them whenever they change (month_sketches.merge_months)",
        "purge: each month whose day sketches lost a purged tenant is merged again without it (one purge commit), "
        "then vacuum"),
    DerivedTable(
        "rollups_1h_by_day_shapes", "hot", "rollups_1h_by_day",
        "each build's rows per tenant re-aggregated per dashboard shape (no dimension, the event, the event and one "
        "of country/device/page), per hour and per whole day; one partition per build",
        "as rollups_1h_by_day: dropped with its build (day_rollups.collect)",
        "purge: the purged tenants' rows and their day rows deleted from every build at once (day_rollups.erase), "
        "the day built again (day_rollups.rebuild)"),
    DerivedTable(
        "funnel_pieces", "hot", "events_raw",
        "per tenant, hour and user: the hour's events as arrays of times, event names, pages, countries, devices",
        "as events_raw: the tier mover's drop of an hour forgets its pieces (session_pieces.forget)",
        "purge: the purged tenants' pieces deleted with their events (session_pieces.forget with tenants)"),
)
# Tags every cold object carries on S3/MinIO unless the policy names others (``cold_marking.s3_tags``).
DEFAULT_COLD_TAGS = {"lakehouse-tier": "cold"}
_PARTITION = re.compile(r"(?:^|/)dt=(\d{4}-\d{2}-\d{2})(?:/hour=(\d{2}))?/([^/]+)$")
_READERS = 16  # parallel manifest/footer reads: on S3 each one is a round trip


@dataclass(frozen=True)
class PartitionInfo:
    """One partition of a dataset in one tier."""

    start: datetime  # UTC start of the hour or day the partition holds
    end: datetime  # exclusive
    rows: int
    bytes: int
    files: int
    min_event_time: datetime | None = None
    max_event_time: datetime | None = None
    location: str = ""
    # Tenants the partition may hold, as (lowest, highest) ranges from Parquet statistics or a manifest's
    # tenant list; None when unknown (hot tier). Used for tenant-specific retention.
    tenant_ranges: tuple[tuple[str, str], ...] | None = None
    notes: tuple[str, ...] = ()  # e.g. "no manifest", "2 object(s) without tag lakehouse-tier=cold"
    untagged_files: int = 0  # cold objects without the policy's cold tags

    @property
    def key(self) -> str:
        return partition_key(self.start, self.end - self.start)


@dataclass
class TierInventory:
    """Every partition of one dataset in one tier, or the error that kept it from being read."""

    dataset: str
    tier: str
    location: str
    grain: str  # "hour" or "day"
    partitions: list[PartitionInfo] = field(default_factory=list)
    error: str | None = None

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.partitions)

    @property
    def min_event_time(self) -> datetime | None:
        return min((p.min_event_time for p in self.partitions if p.min_event_time), default=None)

    @property
    def max_event_time(self) -> datetime | None:
        return max((p.max_event_time for p in self.partitions if p.max_event_time), default=None)


@dataclass
class Inventory:
    collected_at: datetime
    lake_uri: str
    tiers: list[TierInventory]

    def get(self, dataset: str, tier: str) -> TierInventory | None:
        return next((t for t in self.tiers if t.dataset == dataset and t.tier == tier), None)

    def of_dataset(self, dataset: str) -> list[TierInventory]:
        return [t for t in self.tiers if t.dataset == dataset]


def partition_key(start: datetime, grain: timedelta) -> str:
    """The lake's folder name of a partition: ``dt=YYYY-MM-DD/hour=HH`` (hour) or ``dt=YYYY-MM-DD`` (day)."""
    start = start.astimezone(UTC)
    return f"dt={start:%Y-%m-%d}" if grain >= DAY else f"dt={start:%Y-%m-%d}/hour={start:%H}"


def grain_delta(grain: str) -> timedelta:
    return DAY if grain == "day" else HOUR


# ------------------------------------------------------------------------------------------------- hot


def collect_hot(store: HotStore | None, error: str | None = None) -> list[TierInventory]:
    """The hot tier's tables from ``system.parts`` (one row per hourly partition)."""
    out = []
    for dataset, spec in HOT_TABLES.items():
        tier = TierInventory(dataset, "hot", f"clickhouse:{spec.table}", "hour")
        if store is None:
            tier.error = error or "hot tier not inspected"
        else:
            try:
                tier.partitions = _hot_partitions(store, spec)
            except HotStoreError as exc:
                tier.error = str(exc)
        out.append(tier)
    return out


def _hot_partitions(store: HotStore, spec: HotTable) -> list[PartitionInfo]:
    sql = fill(sql_file("clickhouse/queries/hot_partitions.sql"), table=spec.table, time=spec.time_column)
    partitions = []
    for row in store.query_arrow(sql).to_pylist():
        low, high = _utc(row["min_time"]), _utc(row["max_time"])
        start = low.replace(minute=0, second=0, microsecond=0)
        partitions.append(PartitionInfo(
            start=start, end=start + HOUR, rows=int(row["rows"]), bytes=int(row["bytes"]), files=int(row["parts"]),
            min_event_time=low, max_event_time=high, location=f"{spec.table}/{row['partition_id']}",
        ))
    return sorted(partitions, key=lambda p: p.start)


# ------------------------------------------------------------------------------------------------ lake


def collect_lake(
    settings: Settings,
    filesystem: pafs.FileSystem | None = None,
    tags: Callable[[str], dict[str, str]] | None = None,
    with_tenants: bool = False,
    cold_tags: dict[str, str] | None = None,
) -> list[TierInventory]:
    """Warm and cold datasets of the lake: the Delta tables from their logs, the cold days from manifests and
    Parquet footers.

    ``tags`` (an object URI → its tags) checks that every cold object carries ``cold_tags`` (default
    ``DEFAULT_COLD_TAGS``); leave it None on a local lake, where the ``cold/`` folder is the mark.
    ``with_tenants`` also reads the tenant ranges of each partition (footers), needed only when some
    tenant has its own retention.
    """
    required = dict(cold_tags or DEFAULT_COLD_TAGS)
    filesystem = filesystem or lake_filesystem(settings)
    root = settings.effective_lake_uri.rstrip("/")
    out = []
    for (dataset, tier), spec in LAKE_LOCATIONS.items():
        location = f"{root}/{spec.path}"
        inventory = TierInventory(dataset, tier, location, spec.grain)
        try:
            if (dataset, tier) in DELTA_TABLES:
                table = DELTA_TABLES[(dataset, tier)]
                if open_table(settings, table) is not None or tier != "cold":
                    inventory.partitions = _table_partitions(settings, table, location, spec,
                                                             tags if tier == "cold" else None, required)
                    out.append(inventory)
                    continue
            inventory.partitions = _lake_partitions(
                filesystem, fs_path(location), location, spec, tags if tier == "cold" else None, with_tenants,
                required)
        except Exception as exc:  # an unreadable tier (OSError, DeltaError) is reported; the rest still counts
            inventory.error = f"cannot list {location}: {exc} — check LAKEHOUSE_LAKE_URI and the S3 settings"
        out.append(inventory)
    return out


def _table_partitions(settings: Settings, table: WarmTable, location: str, spec: LakeLocation,
                      tags: Callable[[str], dict[str, str]] | None = None,
                      required: dict[str, str] | None = None) -> list[PartitionInfo]:
    """A Delta table's hours (days, for a cold table) from its log: rows, bytes and files of the live files,
    event-time and tenant ranges from the per-file statistics the log carries; for the archive also the hours
    committed empty. With ``tags``, each live file's tags are checked against ``required``."""
    delta = open_table(settings, table)
    if delta is None:
        return []
    actions = add_actions(delta)
    names = actions.column_names
    time_column = next((c for c in spec.time_columns if f"min.{c}" in names), None)
    grain = grain_delta(spec.grain)
    root = table_uri(settings, table).rstrip("/")
    hours: dict[datetime, dict[str, Any]] = {}
    for row in actions.to_pylist():
        day = row[f"partition.{table.day_column}"]
        day = day if hasattr(day, "year") else datetime.fromisoformat(str(day))
        hour = int(row[f"partition.{table.hour_column}"]) if table.hour_column else 0
        start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
        entry = hours.setdefault(start, {"rows": 0, "bytes": 0, "files": 0, "min": None, "max": None,
                                         "tenants": set(), "paths": []})
        entry["rows"] += int(row.get("num_records") or 0)
        entry["bytes"] += int(row["size_bytes"])
        entry["files"] += 1
        path = str(row["path"])
        entry["paths"].append(path if "://" in path or path.startswith("/") else f"{root}/{path}")
        if time_column is not None:
            lo, hi = _utc(row.get(f"min.{time_column}")), _utc(row.get(f"max.{time_column}"))
            entry["min"] = lo if entry["min"] is None or (lo and lo < entry["min"]) else entry["min"]
            entry["max"] = hi if entry["max"] is None or (hi and hi > entry["max"]) else entry["max"]
        if entry["tenants"] is not None:
            low, high = row.get("min.tenant"), row.get("max.tenant")
            entry["tenants"] = None if low is None or high is None else entry["tenants"] | {(str(low), str(high))}
    if table is ARCHIVE_TABLE:  # an hour archived without events is a partition of 0 rows, as it was archived
        for start in empty_hours(delta):
            hours.setdefault(start, {"rows": 0, "bytes": 0, "files": 0, "min": None, "max": None, "tenants": set(),
                                     "paths": []})
    untagged: dict[datetime, int] = {}
    if tags is not None:
        wanted = dict(required or DEFAULT_COLD_TAGS)

        def check(item: tuple[datetime, str]) -> tuple[datetime, bool]:
            return item[0], wanted.items() <= tags(item[1]).items()

        with ThreadPoolExecutor(_READERS) as pool:
            for start, ok in pool.map(check, [(s, p) for s, e in hours.items() for p in e["paths"]]):
                untagged[start] = untagged.get(start, 0) + (0 if ok else 1)
    notes = {start: (f"{n} object(s) without tag " + ",".join(f"{k}={v}" for k, v in (required or {}).items()),)
             for start, n in untagged.items() if n}
    return [PartitionInfo(
        start=start, end=start + grain, rows=e["rows"], bytes=e["bytes"], files=e["files"], min_event_time=e["min"],
        max_event_time=e["max"], location=f"{location}/{partition_key(start, grain)}",
        tenant_ranges=tuple(sorted(e["tenants"])) if e["tenants"] is not None else None,
        notes=notes.get(start, ()), untagged_files=untagged.get(start, 0),
    ) for start, e in sorted(hours.items())]


def _lake_partitions(
    filesystem: pafs.FileSystem,
    base: str,
    location: str,
    spec: LakeLocation,
    tags: Callable[[str], dict[str, str]] | None,
    with_tenants: bool,
    required: dict[str, str],
) -> list[PartitionInfo]:
    entries = filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    folders: dict[tuple[str, str | None], dict[str, Any]] = {}
    for entry in entries:
        if entry.type != pafs.FileType.File:
            continue
        match = _PARTITION.search(entry.path[len(base):])
        if match is None:
            continue
        day, hour, name = match.groups()
        if (spec.grain == "hour") != (hour is not None):
            continue
        folder = folders.setdefault((day, hour), {"data": [], "manifest": None})
        if name == MANIFEST_NAME:
            folder["manifest"] = entry.path
        elif name.endswith(".parquet") and not name.startswith((".", "_")):
            folder["data"].append((entry.path, entry.size))

    def read(item: tuple[tuple[str, str | None], dict[str, Any]]) -> PartitionInfo:
        (day, hour), folder = item
        return _lake_partition(filesystem, location, spec, day, hour, folder, tags, with_tenants, required)

    with ThreadPoolExecutor(_READERS) as pool:
        partitions = list(pool.map(read, sorted(folders.items())))
    return partitions


def _lake_partition(
    filesystem: pafs.FileSystem,
    location: str,
    spec: LakeLocation,
    day: str,
    hour: str | None,
    folder: dict[str, Any],
    tags: Callable[[str], dict[str, str]] | None,
    with_tenants: bool,
    required: dict[str, str],
) -> PartitionInfo:
    start = datetime.strptime(f"{day} {hour or '00'}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    end = start + grain_delta(spec.grain)
    data: list[tuple[str, int]] = sorted(folder["data"])
    notes: list[str] = []
    manifest = _read_json(filesystem, folder["manifest"]) if folder["manifest"] else None
    footers = None
    if manifest is None:
        notes.append("no manifest")
        footers = _footers(filesystem, [p for p, _ in data], spec.time_columns)
    elif (with_tenants and "tenants" not in manifest) or not manifest.get("min_event_time"):
        # cold manifests carry rows per tenant but no event-time range: the footers' statistics have it
        footers = _footers(filesystem, [p for p, _ in data], spec.time_columns)
    if manifest is not None:
        rows = int(manifest.get("rows", 0))
        low, high = _parse_time(manifest.get("min_event_time")), _parse_time(manifest.get("max_event_time"))
        if low is None and footers is not None:
            low, high = footers["min"], footers["max"]
        # the archive lists files[].path, a cold day names its one file
        listed = {f.get("path") for f in manifest.get("files", []) if isinstance(f, dict)}
        if isinstance(manifest.get("file"), str):
            listed.add(manifest["file"])
        present = {p.rsplit("/", 1)[-1] for p, _ in data}
        if listed - present:
            notes.append(f"{len(listed - present)} file(s) of the manifest missing")
        if present - listed:
            notes.append(f"{len(present - listed)} file(s) not in the manifest")
    else:
        assert footers is not None
        rows, low, high = footers["rows"], footers["min"], footers["max"]
    tenant_ranges = None
    if isinstance(manifest, dict) and isinstance(manifest.get("tenants"), list | dict):
        tenant_ranges = tuple((str(t), str(t)) for t in sorted(manifest["tenants"]))
    elif footers is not None and footers["tenants"] is not None:
        tenant_ranges = footers["tenants"]
    untagged = 0
    if tags is not None:
        untagged = sum(1 for path, _ in data if not required.items() <= tags(f"s3://{path}").items())
        if untagged:
            wanted = ",".join(f"{k}={v}" for k, v in required.items())
            notes.append(f"{untagged} object(s) without tag {wanted}")
    folder_uri = f"{location}/{partition_key(start, end - start)}"
    return PartitionInfo(
        start=start, end=end, rows=rows, bytes=sum(size or 0 for _, size in data), files=len(data),
        min_event_time=low, max_event_time=high, location=folder_uri, tenant_ranges=tenant_ranges,
        notes=tuple(notes), untagged_files=untagged,
    )


def _read_json(filesystem: pafs.FileSystem, path: str) -> dict[str, Any] | None:
    try:
        with filesystem.open_input_stream(path) as stream:
            value = json.loads(stream.read().decode("utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _footers(filesystem: pafs.FileSystem, paths: Iterable[str], time_columns: tuple[str, ...]) -> dict[str, Any]:
    """Rows, event-time range and tenant ranges of Parquet files from their footers (no data pages read)."""
    rows = 0
    low: datetime | None = None
    high: datetime | None = None
    tenants: set[tuple[str, str]] | None = set()
    for path in paths:
        with filesystem.open_input_file(path) as handle:
            meta = pq.ParquetFile(handle).metadata
        rows += meta.num_rows
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        time_index = next((names.index(c) for c in time_columns if c in names), None)
        tenant_index = names.index("tenant") if "tenant" in names else None
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            if group.num_rows == 0:
                continue
            if time_index is not None:
                stats = group.column(time_index).statistics
                if stats is not None and stats.has_min_max:
                    lo, hi = _utc(stats.min), _utc(stats.max)
                    low = lo if low is None or (lo and lo < low) else low
                    high = hi if high is None or (hi and hi > high) else high
            if tenants is not None:
                stats = group.column(tenant_index).statistics if tenant_index is not None else None
                if stats is None or not stats.has_min_max:
                    tenants = None
                else:
                    tenants.add((_text(stats.min), _text(stats.max)))
    return {"rows": rows, "min": low, "max": high, "tenants": tuple(sorted(tenants)) if tenants is not None else None}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if hasattr(value, "isoformat"):  # a date
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------- together


def s3_tagger(settings: Settings) -> Callable[[str], dict[str, str]]:
    """Object URI → its tags, through boto3 (the cold tier's ``tier=cold`` tag)."""
    from common.s3 import s3_client

    client = s3_client(settings)

    def tags(uri: str) -> dict[str, str]:
        from botocore.exceptions import ClientError

        bucket, key = uri[len("s3://"):].split("/", 1)
        try:
            answer = client.get_object_tagging(Bucket=bucket, Key=key)
        except ClientError:  # gone since the listing: it has no tags any more
            return {}
        return {t["Key"]: t["Value"] for t in answer.get("TagSet", [])}

    return tags


def collect_inventory(
    settings: Settings,
    store: HotStore | None = None,
    filesystem: pafs.FileSystem | None = None,
    tags: Callable[[str], dict[str, str]] | None = None,
    with_tenants: bool = False,
    now: datetime | None = None,
    hot_error: str | None = None,
    cold_tags: dict[str, str] | None = None,
) -> Inventory:
    """The whole inventory: hot tables through ``store`` (None: recorded as not inspected) and the lake.

    On an S3 lake the cold objects' tags are checked unless ``tags`` is given explicitly.
    """
    if tags is None and is_s3(settings.effective_lake_uri):
        tags = s3_tagger(settings)
    tiers = collect_hot(store, hot_error) + collect_lake(settings, filesystem, tags, with_tenants, cold_tags)
    order = {(d, t): (DATASETS.index(d), TIERS.index(t)) for d in DATASETS for t in TIERS}
    tiers.sort(key=lambda t: order[(t.dataset, t.tier)])
    return Inventory(collected_at=now or datetime.now(UTC), lake_uri=settings.effective_lake_uri, tiers=tiers)
