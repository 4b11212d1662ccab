"""Asset checks of ``raw_events_archive``: is each archived hour complete, intact and well-formed, and is it fresh?

The per-hour checks are partitioned like the asset, so the UI shows their result for every hour, and
they are *blocking*: a failed one stops the same run before ``rollups_hourly`` restates the hot tier
from a bad archive. Each recomputes what it checks from the files themselves, not from what the
archive run reported, so a bug in the archive cannot also hide itself from its check.
"""

# No `from __future__ import annotations` in this module: Dagster reads the annotations of the
# context and resource parameters when the definitions load, and needs real types, not strings.

from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from batch.archive import published_files, verify_hour
from common.events import EVENT_ARROW_SCHEMA
from common.lake import fs_path, lake_filesystem, landing_files_by_hour, manifest_path, read_manifest
from orchestration.archive.assets import raw_events_archive
from orchestration.hours import hourly_check, last_complete_hour, partition_hour
from orchestration.resources import LakehouseResource

# The newest archived hour may lag the last complete hour by this much before the freshness check
# fails: the schedule's run of an hour takes minutes, and one missed tick is worth an alert.
FRESHNESS_GRACE = timedelta(minutes=30)


def _distinct_event_ids(filesystem: pafs.FileSystem, files: list[str], hour: datetime) -> tuple[int, int]:
    """(rows, distinct (tenant, event id) pairs) of the rows of ``hour`` in ``files``, counted by DuckDB
    over a pyarrow dataset.

    The files are read through pyarrow's file system for the lake (local or S3), so this path shares
    nothing with the archive's own DuckDB/httpfs reader.
    """
    if not files:
        return 0, 0
    dataset = pads.dataset([fs_path(f) for f in files], filesystem=filesystem, format="parquet")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("hour_files", dataset)
        row = con.execute(
            'SELECT count(*), count(DISTINCT (tenant, event_id)) FROM hour_files WHERE event_id IS NOT NULL '
            'AND CAST("timestamp" AS TIMESTAMPTZ) >= $start AND CAST("timestamp" AS TIMESTAMPTZ) < $end',
            {"start": hour, "end": hour + timedelta(hours=1)},
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0]), int(row[1])


@hourly_check(asset=raw_events_archive, blocking=True)
def archive_rows_match_landing(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """The archived hour holds exactly one row per distinct event id of the landing files it consumed.

    Counts distinct event ids in the landing files the manifest lists (every one of which must still
    be a committed file of the hour) and compares them with the rows and distinct ids in the archive
    files. Landing files committed after the archive ran (late events) are reported, not failed: the
    late-landing sensor re-archives such hours.
    """
    settings = lakehouse.settings()
    hour = partition_hour(context.partition_key)
    filesystem = lake_filesystem(settings)
    manifest = read_manifest(settings, hour, filesystem)
    if manifest is None:
        return dg.AssetCheckResult(
            passed=False,
            metadata={"problem": f"no manifest at {manifest_path(settings, hour)}: materialize raw_events_archive "
                                 f"for {context.partition_key} first"},
        )
    committed = set(landing_files_by_hour(settings, filesystem).get(hour, []))
    consumed = list(manifest["landing_files"])
    not_committed = sorted(set(consumed) - committed)
    late = sorted(committed - set(consumed))
    landing_rows, landing_ids = _distinct_event_ids(filesystem, consumed, hour)
    archive_rows, archive_ids = _distinct_event_ids(filesystem, published_files(settings, hour, filesystem) or [],
                                                    hour)
    passed = not not_committed and archive_rows == archive_ids == landing_ids == manifest["rows"]
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "archive_rows": archive_rows,
            "archive_distinct_event_ids": archive_ids,
            "landing_distinct_event_ids": landing_ids,
            "landing_rows_in_hour": landing_rows,
            "manifest_rows": int(manifest["rows"]),
            "landing_files_consumed": len(consumed),
            "consumed_files_not_committed": dg.MetadataValue.json(not_committed),
            "late_landing_files_not_yet_archived": len(late),
        },
    )


@hourly_check(asset=raw_events_archive, blocking=True)
def archive_schema_conforms(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Every archive file of the hour has exactly the event contract's columns and types (EVENT_ARROW_SCHEMA).

    Readers outside the project (DuckDB, pandas, Spark) rely on the archive's columns by name and type;
    a drift here would silently change their results, so it fails before the hour is restated.
    """
    settings = lakehouse.settings()
    hour = partition_hour(context.partition_key)
    filesystem = lake_filesystem(settings)
    files = published_files(settings, hour, filesystem)
    if files is None:
        return dg.AssetCheckResult(passed=False, metadata={"problem": f"{context.partition_key} was never archived"})
    expected = [(f.name, str(f.type)) for f in EVENT_ARROW_SCHEMA]
    mismatches = []
    for uri in files:
        actual = [(f.name, str(f.type)) for f in pq.read_schema(fs_path(uri), filesystem=filesystem)]
        if actual != expected:
            mismatches.append({"file": uri, "columns": [f"{n}: {t}" for n, t in actual]})
    return dg.AssetCheckResult(
        passed=not mismatches,
        metadata={
            "files_checked": len(files),
            "expected_columns": dg.MetadataValue.json([f"{n}: {t}" for n, t in expected]),
            "mismatches": dg.MetadataValue.json(mismatches),
        },
    )


@hourly_check(asset=raw_events_archive, blocking=True)
def archive_files_match_manifest(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """The hour's files are exactly those its manifest lists, byte for byte, and re-read give its checksum.

    Catches a file lost, truncated or rewritten after publication, and stray files that a plain glob
    over the archive would read (``batch.archive.verify_hour``).
    """
    problems = verify_hour(lakehouse.settings(), partition_hour(context.partition_key))
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": dg.MetadataValue.json(problems)})


@dg.asset_check(asset=raw_events_archive)
def archive_is_fresh(context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    """The newest archived hour is the last complete hour (allowing 30 minutes for its run), and its manifest exists.

    An hour is complete once the stream's watermark has passed its end (see orchestration/hours.py);
    the hourly schedule archives it then. This check runs on its own schedule, so it also fails when
    the hourly runs stop happening at all.
    """
    settings = lakehouse.settings()
    now = datetime.now(UTC)
    expected = last_complete_hour(settings, now - FRESHNESS_GRACE)
    materialized = context.instance.get_materialized_partitions(raw_events_archive.key)
    if not materialized:
        return dg.AssetCheckResult(
            passed=False,
            metadata={"problem": "no hour has been archived yet: turn on hourly_batch_schedule or backfill"},
        )
    newest = max(partition_hour(key) for key in materialized)
    published = read_manifest(settings, newest) is not None
    lag_hours = max(0.0, (expected - newest).total_seconds() / 3600)
    return dg.AssetCheckResult(
        passed=published and newest >= expected,
        metadata={
            "newest_archived_hour": dg.MetadataValue.timestamp(newest),
            "expected_at_least": dg.MetadataValue.timestamp(expected),
            "lag_hours": dg.MetadataValue.float(lag_hours),
            "manifest_present": published,
        },
    )
