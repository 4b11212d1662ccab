"""The batch recompute of one hour with PySpark: exact rollups from the archive.

The archive is deduplicated and includes the events the stream dropped as late, so its rollups are
the truth the hot tier converges to. The minute rollups come out in the same shape as the stream's
(``common.rollups.ROLLUP_SCHEMA``), so the restatement replaces stream rows like for like; the hourly
rollups are also written to the warm tier's Delta table (``rollups_hourly``, one commit replacing the hour,
``common.lake_tables``), with the distinct user ids of each row so that any engine can merge unique users
exactly. Spark 4.3 cannot write Delta (no Delta release supports it), so Spark hands its result to
delta-rs as Arrow (``DataFrame.toArrow``): an hour's rollups are small, and the commit stays one atomic
replacement whatever engine computed it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common.events import EVENT_ARROW_SCHEMA
from common.lake import spark_uri
from common.lake_tables import (
    ROLLUPS_HOURLY_SCHEMA,
    ROLLUPS_HOURLY_TABLE,
    partition_label,
    replace_partition,
    table_uri,
    with_partition_columns,
)
from common.rollups import ROLLUP_KEYS, ROLLUP_SCHEMA
from common.settings import Settings


@dataclass
class HourlyRecompute:
    hour: datetime
    events: int
    minute_rollups: pa.Table  # ROLLUP_SCHEMA, for rollups_1m / rollups_1h
    raw_events: pa.Table  # EVENT_ARROW_SCHEMA, for events_raw
    hourly_rows: int
    warm_path: str  # the warm table's URI
    warm_version: int  # the version of the warm table holding the hour
    seconds: float


def _rollup(events: DataFrame, unit: str, column: str) -> DataFrame:
    return events.groupBy(*ROLLUP_KEYS, F.date_trunc(unit, "timestamp").alias(column)).agg(
        F.count(F.lit(1)).alias("events"),
        F.sum("revenue").alias("revenue"),
        F.array_sort(F.collect_set("user_id")).alias("user_ids"),
    )


def recompute_hour(
    spark: SparkSession, settings: Settings, hour: datetime, archive_files: Sequence[str],
    provenance: dict[str, Any] | None = None,
) -> HourlyRecompute:
    """Roll up the archived events of ``hour`` (the hour's live files in the archive table) and replace the
    warm hour in one commit whose metadata records ``provenance`` (e.g. the archive version and checksum)."""
    started = time.perf_counter()
    hour = hour.astimezone(UTC)
    warm = table_uri(settings, ROLLUPS_HOURLY_TABLE)
    if not archive_files:
        empty = pa.Table.from_pylist([], schema=ROLLUP_SCHEMA)
        version = _write_warm(settings, hour, ROLLUPS_HOURLY_SCHEMA.empty_table(), provenance)
        return HourlyRecompute(hour, 0, empty, pa.Table.from_pylist([], schema=EVENT_ARROW_SCHEMA), 0, warm,
                               version, time.perf_counter() - started)
    events = spark.read.parquet(*[spark_uri(f) for f in archive_files]).select(*EVENT_ARROW_SCHEMA.names).cache()
    minute = _rollup(events, "minute", "minute").select(*ROLLUP_SCHEMA.names)
    minute_rollups = minute.toArrow().cast(ROLLUP_SCHEMA)
    hourly = _rollup(events, "hour", "hour").select(*ROLLUPS_HOURLY_SCHEMA.names).toArrow().cast(ROLLUPS_HOURLY_SCHEMA)
    raw = events.toArrow().cast(EVENT_ARROW_SCHEMA)
    events.unpersist()
    version = _write_warm(settings, hour, hourly, provenance)
    return HourlyRecompute(
        hour=hour,
        events=raw.num_rows,
        minute_rollups=minute_rollups,
        raw_events=raw,
        hourly_rows=hourly.num_rows,
        warm_path=warm,
        warm_version=version,
        seconds=time.perf_counter() - started,
    )


def _write_warm(settings: Settings, hour: datetime, hourly: pa.Table, provenance: dict[str, Any] | None) -> int:
    data = with_partition_columns(hourly.sort_by([(c, "ascending") for c in ("tenant", "event", "country", "device",
                                                                          "page")]), ROLLUPS_HOURLY_TABLE, hour)
    details = {"dataset": "warm/rollups_hourly", "partition": partition_label(hour), "rows": hourly.num_rows,
               "events": int(pc.sum(hourly["events"]).as_py() or 0), **(provenance or {})}
    return replace_partition(settings, ROLLUPS_HOURLY_TABLE, hour, data, "recompute", details)
