"""Cold days: raw events compacted per UTC day, and daily rollups, each day one commit of a Delta table.

Tables (``common.lake_tables.COLD_EVENTS_TABLE`` / ``COLD_ROLLUPS_DAILY_TABLE``, at ``cold/events`` and
``cold/rollups_daily``), partitioned by ``dt``. A day is written by ONE commit that replaces that day
(``replace_day``): readers see the day before or after, never half of it, so no manifest has to be written
last. The commit's provenance (``lakehouse.provenance``) is what the manifest used to hold: ``rows``, the
content ``checksum`` (``content_checksum``: independent of files and row order, so a re-read can be
compared with it), rows per tenant and per source hour, and ``sources``: the archive hours the day was
built from, each with a fingerprint of its live files in the archive's Delta table (``archive_sources``:
any commit that changes the hour changes its files). A day whose sources changed since (a late hour
archived, an hour restated) is rebuilt by the next mover run, so the cold tier never silently misses an
hour that reached the archive after it was built. ``published`` reads that provenance back from the
table's history (the newest commit naming the day: a build, a migration or a purge, which carries the
provenance forward with its changes).

Raw events are sorted by tenant, event, timestamp, event_id (readers skip row groups by tenant and
event, as in the archive). Daily rollups are built from the warm hourly rollups' table and checked
against the archive: each hour's rolled-up event count must equal its archived row count.
The whole day is handled in memory (Arrow), which is fine for days of up to a few tens of millions of events
on one node; larger days would stream through DuckDB instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from common.events import EVENT_ARROW_SCHEMA, format_ts
from common.lake import fs_path, hour_partition, is_s3, lake_filesystem
from common.lake_io import day_start, read_tables, sha256
from common.lake_tables import (
    ARCHIVE_TABLE,
    COLD_EVENTS_TABLE,
    COLD_ROLLUPS_DAILY_TABLE,
    DAY_SKETCHES_SCHEMA,
    DAY_SKETCHES_TABLE,
    PARTITION_KEY,
    ROLLUPS_HOURLY_SCHEMA,
    ROLLUPS_HOURLY_TABLE,
    WarmTable,
    add_actions,
    day_label,
    file_days,
    month_partition_label,
    newest_commit_of,
    open_table,
    partition_files,
    replace_day,
    table_uri,
)
from common.settings import Settings
from common.sql_files import sql_file
from storage_tiers.policy import TierPolicy

COLD_MANIFEST_FORMAT = "lakehouse.cold.manifest/2"
CHECKSUM_METHOD = "lakehouse.cold.content/1"  # DuckDB: count(*) and sum(hash(every data column)) as HUGEINT
EVENTS_SORT = ["tenant", "event", "timestamp", "event_id"]
ROLLUP_KEYS = ["tenant", "event", "country", "device", "page"]
HOURLY_SCHEMA = ROLLUPS_HOURLY_SCHEMA
DAILY_SCHEMA = pa.schema([
    ("tenant", pa.string()), ("event", pa.string()), ("country", pa.string()), ("device", pa.string()),
    ("page", pa.string()), ("day", pa.timestamp("us", tz="UTC")), ("events", pa.int64()),
    ("revenue", pa.float64()), ("user_ids", pa.list_(pa.string())),
])
DAILY_SQL = sql_file("duckdb/tier_rollups_daily.sql")
COLD_SCHEMAS = {"cold/events": EVENT_ARROW_SCHEMA, "cold/rollups_daily": DAILY_SCHEMA,
                "cold/day_sketches": DAY_SKETCHES_SCHEMA}


class ColdBuildError(RuntimeError):
    """A cold day cannot be built (its inputs are incomplete); the message says what to run first."""


@dataclass
class ColdDay:
    dataset: str  # events | rollups_daily
    day: date
    rows: int
    bytes: int
    sha256: str  # the content checksum (CHECKSUM_METHOD)
    path: str  # URI of the day's partition in its table
    manifest: dict[str, Any]  # the provenance of the day's newest commit
    built: bool  # False: the published day was already current
    tagged: list[str] = field(default_factory=list)


def cold_table(dataset: str) -> WarmTable:
    """``cold/events``, ``cold/rollups_daily`` or ``cold/day_sketches`` (as ColdDay.dataset names them) → its table."""
    return {"cold/events": COLD_EVENTS_TABLE, "cold/day_sketches": DAY_SKETCHES_TABLE}.get(dataset,
                                                                                          COLD_ROLLUPS_DAILY_TABLE)


def content_checksum(data: pa.Table, schema: pa.Schema) -> str:
    """A checksum of a day's rows that does not depend on how they are split into files or ordered: what a
    re-read from the table is compared with."""
    data = data.select(schema.names).cast(schema)
    columns = ", ".join(f'"{name}"' for name in schema.names)
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("day_rows", data)
        rows, total = con.execute(f"SELECT count(*), coalesce(sum(hash({columns})::HUGEINT), 0) "  # fixed names
                                  "FROM day_rows").fetchone()
    finally:
        con.close()
    return sha256(f"{CHECKSUM_METHOD}\nrows={rows}\nsum={total}".encode())


def table_hours(settings: Settings, table: Any, day: date, delta: Any | None = None) -> dict[datetime, dict[str, Any]]:
    """The hours of ``day`` that hold files in a warm Delta table, each with its rows, bytes, live files (URIs)
    and a fingerprint of those files, all from the table's log (no data read, no listing)."""
    delta = delta if delta is not None else open_table(settings, table)
    if delta is None:
        return {}
    actions = add_actions(delta)
    days = pc.cast(actions[f"partition.{table.day_column}"], pa.date32())
    actions = actions.filter(pc.equal(days, pa.scalar(day, pa.date32())))
    root = table_uri(settings, table).rstrip("/")
    out: dict[datetime, dict[str, Any]] = {}
    for path, size, rows, hour in zip(actions["path"].to_pylist(), actions["size_bytes"].to_pylist(),
                                      actions["num_records"].to_pylist(),
                                      actions[f"partition.{table.hour_column}"].to_pylist(), strict=True):
        key = day_start(day).replace(hour=int(hour))
        entry = out.setdefault(key, {"rows": 0, "bytes": 0, "files": []})
        entry["rows"] += int(rows or 0)
        entry["bytes"] += int(size)
        entry["files"].append(f"{root}/{path}")
    for entry in out.values():
        entry["files"].sort()
        entry["checksum"] = "files:" + sha256("\n".join(f.rsplit("/", 1)[-1] for f in entry["files"]).encode())
    return dict(sorted(out.items()))


def archive_sources(settings: Settings, filesystem: pafs.FileSystem, day: date) -> list[dict[str, Any]]:
    """The archived hours of ``day`` that hold rows: hour, rows, checksum (a fingerprint of the hour's live files
    in the archive table), files (URIs)."""
    return [{"hour": format_ts(hour), "rows": e["rows"], "checksum": e["checksum"], "files": e["files"]}
            for hour, e in table_hours(settings, ARCHIVE_TABLE, day).items()]


def _public_sources(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if k != "files"} for s in sources]


def day_files(settings: Settings, table: WarmTable, day: date, delta: Any | None = None) -> list[str]:
    """The live files of one day of a cold table (URIs), from its log."""
    return partition_files(settings, table, days=(day, day), delta=delta)


def published(settings: Settings, table: WarmTable, day: date, delta: Any | None = None) -> dict[str, Any] | None:
    """The provenance of a day the cold table holds (its newest commit's), or None when the table has no row of
    the day. A day loaded without provenance (in bulk) gets what its log says: ``rows``."""
    delta = delta if delta is not None else open_table(settings, table)
    if delta is None:
        return None
    files = _files_of_day(delta, table, day)
    if not files:
        return None
    if table.month_column:  # the day's own commit, or a newer one that rewrote its month (days in ``days``)
        commit = newest_commit_of(delta, (day_label(day), month_partition_label(day)))
        if commit is not None and commit.get(PARTITION_KEY) != day_label(day):
            days = commit["provenance"].get("days", {})
            if day.isoformat() not in days:
                return None  # the month's newest rewrite holds no row of the day
            commit = {**commit, "provenance": days[day.isoformat()]}
        if commit is not None and int(commit["provenance"].get("rows", -1)) == 0:
            return None  # every row of the day deleted (a purge) from a file holding other days
    else:
        commit = newest_commit_of(delta, day_label(day))
    manifest = dict(commit["provenance"]) if commit is not None else {}
    manifest.setdefault("rows", sum(int(f.get("num_records") or 0) for f in files))
    manifest["version"] = int(delta.version())
    manifest["bytes"] = sum(int(f["size_bytes"]) for f in files)
    return manifest


def _day_of(action: dict[str, Any]) -> date:
    day = action["partition.dt"]
    return day if isinstance(day, date) else date.fromisoformat(str(day))


def _files_of_day(delta: Any, table: WarmTable, day: date) -> list[dict[str, Any]]:
    """The live files (add actions) that may hold rows of ``day``: its partition's, or in a table partitioned by
    month the files whose days span it."""
    actions = add_actions(delta)
    first, last = file_days(actions, table)
    return [f for f, lo, hi in zip(actions.to_pylist(), first.to_pylist(), last.to_pylist(), strict=True)
            if lo <= day <= hi]


def is_current(manifest: dict[str, Any] | None, sources: list[dict[str, Any]]) -> bool:
    """Whether a published cold day was built from exactly these archive hours (same checksums)."""
    if manifest is None:
        return False
    return [(s["hour"], s["checksum"]) for s in manifest.get("sources", [])] == \
        [(s["hour"], s["checksum"]) for s in sources]


def _counts(table: pa.Table, column: str) -> dict[str, int]:
    if table.num_rows == 0:
        return {}
    grouped = table.group_by(column).aggregate([([], "count_all")])
    return {str(k): int(v) for k, v in zip(grouped[column].to_pylist(), grouped["count_all"].to_pylist(), strict=True)}


def publish_day(
    settings: Settings, table: WarmTable, day: date, data: pa.Table, sort_key: list[str],
    sources: list[dict[str, Any]], extra: dict[str, Any], run_id: str | None, operation: str = "cold",
) -> ColdDay:
    """Commit ``data`` as the whole of ``day`` in a cold table, sorted by ``sort_key``, with its provenance."""
    schema = COLD_SCHEMAS[table.name]
    data = data.select(schema.names).cast(schema).sort_by([(c, "ascending") for c in sort_key])
    checksum = content_checksum(data, schema)
    manifest: dict[str, Any] = {
        "format": COLD_MANIFEST_FORMAT,
        "dataset": table.name,
        "partition": day_label(day),
        "day": format_ts(day_start(day)),
        "created_at": format_ts(datetime.now(UTC)),
        "run_id": run_id,
        "rows": data.num_rows,
        "checksum": checksum,
        "checksum_method": CHECKSUM_METHOD,
        "sort_key": sort_key,
        "tenants": _counts(data, "tenant"),
        "sources": _public_sources(sources),
        **extra,
    }
    version = replace_day(settings, table, day, data, operation, manifest)
    delta = open_table(settings, table)
    size = sum(int(f["size_bytes"]) for f in _files_of_day(delta, table, day)) if delta else 0
    path = f"{table_uri(settings, table)}/{day_label(day)}"
    return ColdDay(table.name, day, data.num_rows, size, checksum, path, {**manifest, "version": version},
                   built=True)


def _sources_and_unchanged(
    settings: Settings, filesystem: pafs.FileSystem, table: WarmTable, day: date
) -> tuple[list[dict[str, Any]], ColdDay | None]:
    """The archive hours of ``day`` and, when the published cold day was built from exactly those, that day
    (nothing to rebuild)."""
    sources = archive_sources(settings, filesystem, day)
    current = published(settings, table, day)
    if not sources or not is_current(current, sources):
        return sources, None
    assert current is not None
    return sources, ColdDay(table.name, day, current["rows"], current["bytes"], current.get("checksum", ""),
                            f"{table_uri(settings, table)}/{day_label(day)}", current, built=False)


def build_cold_events(
    settings: Settings, filesystem: pafs.FileSystem, policy: TierPolicy, day: date, run_id: str | None = None
) -> ColdDay | None:
    """Compact the archived hours of ``day`` into one cold file (rebuilt only when its sources changed)."""
    sources, unchanged = _sources_and_unchanged(settings, filesystem, COLD_EVENTS_TABLE, day)
    if not sources or unchanged:
        return unchanged
    table = read_tables(filesystem, [fs_path(f) for s in sources for f in s["files"]], EVENT_ARROW_SCHEMA)
    table = table if table is not None else EVENT_ARROW_SCHEMA.empty_table()
    hour_rows = _hour_counts(table.column("timestamp"))
    return publish_day(settings, COLD_EVENTS_TABLE, day, table, EVENTS_SORT, sources, {"hour_rows": hour_rows},
                       run_id)


def _hour_counts(timestamps: pa.ChunkedArray) -> dict[str, int]:
    if len(timestamps) == 0:
        return {}
    hours = pc.floor_temporal(timestamps, unit="hour")
    table = pa.table({"h": hours})
    grouped = table.group_by("h").aggregate([([], "count_all")])
    counts = zip(grouped["h"].to_pylist(), grouped["count_all"].to_pylist(), strict=True)
    return {format_ts(h): int(n) for h, n in counts}


def warm_hour_rollups(settings: Settings, filesystem: pafs.FileSystem, hour: datetime) -> pa.Table | None:
    """The warm hourly rollups of one hour (its live files in the warm table), or None when it has no file."""
    entry = table_hours(settings, ROLLUPS_HOURLY_TABLE, hour.date()).get(hour.astimezone(UTC))
    if entry is None:
        return None
    return read_tables(filesystem, [fs_path(f) for f in entry["files"]], HOURLY_SCHEMA)


def build_rollups_daily(
    settings: Settings, filesystem: pafs.FileSystem, policy: TierPolicy, day: date, run_id: str | None = None
) -> ColdDay | None:
    """The daily rollups of ``day`` from its warm hourly rollups, checked hour by hour against the archive.

    Rebuilt only when the archive hours changed since the published version. Raises ``ColdBuildError``
    naming the hours whose warm rollups are missing or disagree with the archive.
    """
    sources, unchanged = _sources_and_unchanged(settings, filesystem, COLD_ROLLUPS_DAILY_TABLE, day)
    if not sources or unchanged:
        return unchanged
    hours, problems = [], []
    for source in sources:
        hour = datetime.fromisoformat(source["hour"].replace("Z", "+00:00"))
        warm = warm_hour_rollups(settings, filesystem, hour)
        events = 0 if warm is None else int(pc.sum(warm["events"]).as_py() or 0)
        if events != source["rows"]:
            problems.append(f"{hour_partition(hour)}: warm rollups count {events} events, archive {source['rows']}")
        source["warm_events"] = events
        if warm is not None:
            hours.append(warm)
    if problems:
        raise ColdBuildError(
            f"daily rollups of {day} not built: the warm hourly rollups disagree with the archive "
            f"({'; '.join(problems)}); materialize rollups_hourly for those hours first")
    hourly = pa.concat_tables(hours) if hours else HOURLY_SCHEMA.empty_table()
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("hourly", hourly)
        daily = con.execute(DAILY_SQL, {"day": day_start(day)}).to_arrow_table().cast(DAILY_SCHEMA)
    finally:
        con.close()
    events = int(pc.sum(daily["events"]).as_py() or 0)
    return publish_day(settings, COLD_ROLLUPS_DAILY_TABLE, day, daily, ROLLUP_KEYS, sources, {"events": events},
                       run_id)


def read_day(settings: Settings, table: WarmTable, day: date, filesystem: pafs.FileSystem | None = None) -> pa.Table:
    """Every row of one day of a cold table, re-read from the live files its log lists."""
    filesystem = filesystem or lake_filesystem(settings)
    schema = COLD_SCHEMAS[table.name]
    if table.month_column:  # files of several days: keep the day's rows
        data = read_tables(filesystem, [fs_path(f) for f in day_files(settings, table, day)])
        if data is not None:
            with_day = schema.append(pa.field(table.day_column, pa.date32()))
            data = data.select(with_day.names).cast(with_day)
            data = data.filter(pc.equal(data[table.day_column], pa.scalar(day, pa.date32()))).select(schema.names)
    else:
        data = read_tables(filesystem, [fs_path(f) for f in day_files(settings, table, day)], schema)
    return data if data is not None else schema.empty_table()


def verify_cold_day(settings: Settings, table: WarmTable, day: date,
                    filesystem: pafs.FileSystem | None = None) -> list[str]:
    """Problems with a cold day, found by re-reading it from the table: rows, content checksum and (raw events)
    rows per hour must be what its commit's provenance says."""
    manifest = published(settings, table, day)
    if manifest is None:
        return [f"{table.name} {day_label(day)}: the table holds no row of the day"]
    data = read_day(settings, table, day, filesystem)
    problems = []
    if data.num_rows != int(manifest.get("rows", -1)):
        problems.append(f"{table.name} {day_label(day)}: {data.num_rows} rows re-read, {manifest.get('rows')} "
                        "committed")
    if "checksum" in manifest and content_checksum(data, COLD_SCHEMAS[table.name]) != manifest["checksum"]:
        problems.append(f"{table.name} {day_label(day)}: the re-read rows' checksum differs from the commit's")
    if "hour_rows" in manifest and _hour_counts(data.column("timestamp")) != manifest["hour_rows"]:
        problems.append(f"{table.name} {day_label(day)}: rows per hour re-read differ from the commit's")
    return problems


def mark_cold(settings: Settings, policy: TierPolicy, cold: ColdDay) -> list[str]:
    """Tag the day's objects as cold on S3 (lifecycle rules and inventories key on the tags); locally the
    ``cold/`` folder itself is the mark, and nothing is tagged."""
    return tag_cold_day(settings, policy, cold_table(cold.dataset), cold.day)


def tag_cold_day(settings: Settings, policy: TierPolicy, table: WarmTable, day: date) -> list[str]:
    """Put the policy's cold tags on the live data files of a cold day (S3 only). Also needed after any rewrite of
    the day (a purge), since a rewrite makes new objects, which have no tags."""
    if not is_s3(settings.effective_lake_uri) or not policy.s3_tags:
        return []
    from common.s3 import s3_client

    client = s3_client(settings)
    tags = {"TagSet": [{"Key": k, "Value": v} for k, v in sorted(policy.s3_tags.items())]}
    uris = day_files(settings, table, day)
    for uri in uris:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        client.put_object_tagging(Bucket=bucket, Key=key, Tagging=tags)
    return uris


def object_tags(settings: Settings, uri: str) -> dict[str, str]:
    """The S3 tags of one object (for checks and the audit report)."""
    from common.s3 import s3_client

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    tagset = s3_client(settings).get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return {t["Key"]: t["Value"] for t in tagset}
