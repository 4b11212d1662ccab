"""Cold daily files: raw events compacted per UTC day, and daily rollups, each published with a manifest.

Layout (``common.lake.cold_events_path`` / ``rollups_daily_path``): ``dt=YYYY-MM-DD/part-0.parquet``
then ``_manifest.json`` written last (readers that follow the manifest never see a partial day).
The manifest records ``rows``, ``bytes``, ``sha256`` of the file, rows per tenant and per source hour,
and ``sources``: the archive hours the day was built from, each with a fingerprint of its live files in
the archive's Delta table (``archive_sources``: any commit that changes the hour changes its files). A day whose
sources changed since (a late hour archived, an hour restated) is rebuilt by the next mover run, so
the cold tier never silently misses an hour that reached the archive after it was built.

Raw events are sorted by tenant, event, timestamp, event_id (readers skip row groups by tenant and
event, as in the archive). Daily rollups are built from the warm hourly rollups' table and checked
against the archive: each hour's rolled-up event count must equal its archived row count.
The whole day is handled in memory (Arrow), which is fine for days of up to a few tens of millions of events
on one node; larger days would stream through DuckDB instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from common.events import EVENT_ARROW_SCHEMA, format_ts
from common.lake import (
    MANIFEST_NAME,
    cold_events_path,
    fs_path,
    hour_partition,
    is_s3,
    rollups_daily_path,
)
from common.lake_io import (
    day_start,
    manifest_of,
    parquet_bytes,
    publish,
    read_bytes,
    read_tables,
    sha256,
)
from common.lake_tables import (
    ARCHIVE_TABLE,
    ROLLUPS_HOURLY_SCHEMA,
    ROLLUPS_HOURLY_TABLE,
    add_actions,
    open_table,
    table_uri,
)
from common.settings import Settings
from common.sql_files import sql_file
from storage_tiers.policy import TierPolicy

COLD_MANIFEST_FORMAT = "lakehouse.cold.manifest/1"
PART_NAME = "part-0.parquet"
EVENTS_SORT = ["tenant", "event", "timestamp", "event_id"]
ROLLUP_KEYS = ["tenant", "event", "country", "device", "page"]
HOURLY_SCHEMA = ROLLUPS_HOURLY_SCHEMA
DAILY_SCHEMA = pa.schema([
    ("tenant", pa.string()), ("event", pa.string()), ("country", pa.string()), ("device", pa.string()),
    ("page", pa.string()), ("day", pa.timestamp("us", tz="UTC")), ("events", pa.int64()),
    ("revenue", pa.float64()), ("user_ids", pa.list_(pa.string())),
])
DAILY_SQL = sql_file("duckdb/tier_rollups_daily.sql")


class ColdBuildError(RuntimeError):
    """A cold day cannot be built (its inputs are incomplete); the message says what to run first."""


@dataclass
class ColdDay:
    dataset: str  # events | rollups_daily
    day: date
    rows: int
    bytes: int
    sha256: str
    path: str  # URI of the data file
    manifest: dict[str, Any]
    built: bool  # False: the published day was already current
    tagged: list[str] = field(default_factory=list)


def day_folder(root_uri: str, day: date) -> str:
    return f"{fs_path(root_uri)}/dt={day.isoformat()}"


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


def published(filesystem: pafs.FileSystem, root_uri: str, day: date) -> dict[str, Any] | None:
    return manifest_of(filesystem, day_folder(root_uri, day))


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


def _publish_day(
    filesystem: pafs.FileSystem, root_uri: str, dataset: str, day: date, table: pa.Table, compression: str,
    sort_key: list[str], sources: list[dict[str, Any]], extra: dict[str, Any], run_id: str | None,
) -> ColdDay:
    folder = day_folder(root_uri, day)
    body = parquet_bytes(table, compression, sort_key)
    digest = sha256(body)
    publish(filesystem, f"{folder}/{PART_NAME}", body)
    manifest: dict[str, Any] = {
        "format": COLD_MANIFEST_FORMAT,
        "dataset": dataset,
        "partition": f"dt={day.isoformat()}",
        "day": format_ts(day_start(day)),
        "created_at": format_ts(datetime.now(UTC)),
        "run_id": run_id,
        "file": PART_NAME,
        "rows": table.num_rows,
        "bytes": len(body),
        "sha256": digest,
        "compression": compression,
        "sort_key": sort_key,
        "tenants": _counts(table, "tenant"),
        "sources": _public_sources(sources),
        **extra,
    }
    publish(filesystem, f"{folder}/{MANIFEST_NAME}", (json.dumps(manifest, indent=2) + "\n").encode())
    uri = f"s3://{folder}/{PART_NAME}" if isinstance(filesystem, pafs.S3FileSystem) else f"{folder}/{PART_NAME}"
    return ColdDay(dataset, day, table.num_rows, len(body), digest, uri, manifest, built=True)


def _sources_and_unchanged(
    settings: Settings, filesystem: pafs.FileSystem, root: str, dataset: str, day: date
) -> tuple[list[dict[str, Any]], ColdDay | None]:
    """The archive hours of ``day`` and, when the published cold day was built from exactly those, that day
    (nothing to rebuild)."""
    sources = archive_sources(settings, filesystem, day)
    current = published(filesystem, root, day)
    if not sources or not is_current(current, sources):
        return sources, None
    assert current is not None
    return sources, ColdDay(dataset, day, current["rows"], current["bytes"], current["sha256"],
                            f"{root}/dt={day.isoformat()}/{PART_NAME}", current, built=False)


def build_cold_events(
    settings: Settings, filesystem: pafs.FileSystem, policy: TierPolicy, day: date, run_id: str | None = None
) -> ColdDay | None:
    """Compact the archived hours of ``day`` into one cold file (rebuilt only when its sources changed)."""
    root = cold_events_path(settings)
    sources, unchanged = _sources_and_unchanged(settings, filesystem, root, "events", day)
    if not sources or unchanged:
        return unchanged
    table = read_tables(filesystem, [fs_path(f) for s in sources for f in s["files"]], EVENT_ARROW_SCHEMA)
    table = (table if table is not None else EVENT_ARROW_SCHEMA.empty_table()).sort_by(
        [(c, "ascending") for c in EVENTS_SORT])
    hour_rows = _hour_counts(table.column("timestamp"))
    spec = policy.datasets["events"].tier("cold")
    compression = spec.compression if spec else "zstd"
    return _publish_day(filesystem, root, "cold/events", day, table, compression, EVENTS_SORT, sources,
                        {"hour_rows": hour_rows}, run_id)


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
    root = rollups_daily_path(settings)
    sources, unchanged = _sources_and_unchanged(settings, filesystem, root, "rollups_daily", day)
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
    spec = policy.datasets["rollups_daily"].tier("cold")
    compression = spec.compression if spec else "zstd"
    events = int(pc.sum(daily["events"]).as_py() or 0)
    return _publish_day(filesystem, root, "cold/rollups_daily", day, daily, compression, ROLLUP_KEYS, sources,
                        {"events": events}, run_id)


def verify_cold_day(filesystem: pafs.FileSystem, root_uri: str, day: date) -> list[str]:
    """Problems with a published cold day, from the lake itself: file present, sha256 and row count as published."""
    folder = day_folder(root_uri, day)
    manifest = manifest_of(filesystem, folder)
    if manifest is None:
        return [f"{root_uri}/dt={day} has no manifest"]
    body = read_bytes(filesystem, f"{folder}/{manifest['file']}")
    if body is None:
        return [f"{root_uri}/dt={day}/{manifest['file']} is missing"]
    problems = []
    if sha256(body) != manifest["sha256"]:
        problems.append(f"{root_uri}/dt={day}/{manifest['file']}: sha256 differs from its manifest")
    rows = pq.ParquetFile(pa.BufferReader(body)).metadata.num_rows
    if rows != manifest["rows"]:
        problems.append(f"{root_uri}/dt={day}: {rows} rows in the file, {manifest['rows']} in the manifest")
    return problems


def mark_cold(settings: Settings, policy: TierPolicy, cold: ColdDay) -> list[str]:
    """Tag the day's objects as cold on S3 (lifecycle rules and inventories key on the tags); locally the
    ``cold/`` folder itself is the mark, and nothing is tagged."""
    root = cold_events_path(settings) if cold.dataset == "cold/events" else rollups_daily_path(settings)
    return tag_cold_folder(settings, policy, day_folder(root, cold.day))


def tag_cold_folder(settings: Settings, policy: TierPolicy, folder: str) -> list[str]:
    """Put the policy's cold tags on a cold day's data file and manifest (S3 only). Also needed after any
    rewrite of those objects (a purge), since S3 tags belong to one object version and a new PUT has none."""
    if not is_s3(settings.effective_lake_uri) or not policy.s3_tags:
        return []
    from common.s3 import s3_client

    client = s3_client(settings)
    bucket, _, prefix = folder.partition("/")
    tags = {"TagSet": [{"Key": k, "Value": v} for k, v in sorted(policy.s3_tags.items())]}
    keys = [f"{prefix}/{PART_NAME}", f"{prefix}/{MANIFEST_NAME}"]
    for key in keys:
        client.put_object_tagging(Bucket=bucket, Key=key, Tagging=tags)
    return [f"s3://{bucket}/{k}" for k in keys]


def object_tags(settings: Settings, uri: str) -> dict[str, str]:
    """The S3 tags of one object (for checks and the audit report)."""
    from common.s3 import s3_client

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    tagset = s3_client(settings).get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return {t["Key"]: t["Value"] for t in tagset}

