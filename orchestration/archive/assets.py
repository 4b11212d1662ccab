"""``raw_events_archive``: one hour of the landing area compacted into the immutable Parquet archive.

The stream lands every parsed event, duplicates and late ones too, as many small files per hour;
``batch.archive.archive_hour`` deduplicates them by ``(tenant, event_id)`` into a few sorted zstd files and
publishes them with a manifest. Re-running an hour is idempotent: the same committed landing files
give the same rows and the same content checksum, which is also the asset's data version, so the UI
shows at a glance whether a re-run changed anything.
"""

# No `from __future__ import annotations` in this module: Dagster reads the annotations of the
# context and resource parameters when the definitions load, and needs real types, not strings.

import time
from typing import Any

import dagster as dg

from batch.archive import ArchiveResult, archive_hour
from common.lake import archive_path
from orchestration.closed_hours import require_closed_hour
from orchestration.hours import HOURLY, LOAD_SETTINGS, OWNERS, partition_hour
from orchestration.resources import HotStoreResource, LakehouseResource


@dg.asset(
    partitions_def=HOURLY,
    group_name="archive",
    owners=OWNERS,
    kinds={"deltalake", "duckdb"},
    tags={"layer": "batch"},
    metadata={
        "lake_location": dg.MetadataValue.path(archive_path(LOAD_SETTINGS)),
        "reader_contract": "a Delta table partitioned by dt, hour: read it through the table (delta_scan, "
                           "DeltaTable(...).to_pyarrow_dataset(), the log's file list), never a glob",
    },
)
def raw_events_archive(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, hot_store: HotStoreResource
) -> dg.MaterializeResult:
    """Raw events of one UTC hour (event time), deduplicated by (tenant, event_id), in the archive's Delta table.

    Reads the committed landing files of the hour (late events included, files of failed stream
    batches never), keeps one row per (tenant, event id), sorts by tenant, event, timestamp and replaces
    the hour of `<lake>/archive/events` in one commit whose metadata records the landing files consumed,
    the rows and the content checksum. Re-running the hour replaces it whole; with the same landing
    files it yields the same checksum. Data scientists read the table directly (DuckDB, pandas, chDB).
    Waits (bounded) for the hour to be closed first, so the archive holds every event the speed layer
    counted and the restatement after it can only add (orchestration/closed_hours.py).
    """
    hour = partition_hour(context.partition_key)
    settings = lakehouse.settings()
    started = time.perf_counter()
    state = require_closed_hour(context, hot_store.store(), settings, hour)
    result = archive_hour(settings, hour, progress=context.log.info)
    metadata = archive_metadata(result, time.perf_counter() - started)
    metadata["hour_state"] = dg.MetadataValue.text(("closed: " if state.closed else "open: ") + state.reason)
    return dg.MaterializeResult(
        metadata=metadata,
        data_version=dg.DataVersion(result.checksum),
    )


def archive_metadata(result: ArchiveResult, seconds: float) -> dict[str, Any]:
    """What the UI shows for one archived hour: size, time range, provenance and the checksum."""
    metadata: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(result.rows),
        "rows": dg.MetadataValue.int(result.rows),
        "bytes": dg.MetadataValue.int(result.bytes),
        "event_time_min": _instant(result.min_event_time),
        "event_time_max": _instant(result.max_event_time),
        "duration_s": dg.MetadataValue.float(round(seconds, 3)),
        "files": dg.MetadataValue.int(len(result.files)),
        "file_list": dg.MetadataValue.json(result.files),
        "landing_files": dg.MetadataValue.int(len(result.landing_files)),
        "landing_rows": dg.MetadataValue.int(result.landing_rows),
        "checksum": dg.MetadataValue.text(result.checksum),
        "table": dg.MetadataValue.path(result.table),
        "table_version": dg.MetadataValue.int(result.version),
    }
    for key in ("duplicates_dropped", "rows_outside_hour", "rows_without_event_id"):
        if key in result.extra:
            metadata[key] = dg.MetadataValue.int(int(result.extra[key]))
    if "run_id" in result.extra:
        metadata["archive_run_id"] = dg.MetadataValue.text(str(result.extra["run_id"]))
    return metadata


def _instant(moment: Any) -> dg.MetadataValue:
    return dg.MetadataValue.timestamp(moment) if moment is not None else dg.MetadataValue.text("(empty hour)")
