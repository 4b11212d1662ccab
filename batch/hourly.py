"""The batch recompute of one hour with PySpark: exact rollups from the archive.

The archive is deduplicated and includes the events the stream dropped as late, so its rollups are
the truth the hot tier converges to. The minute rollups come out in the same shape as the stream's
(``common.rollups.ROLLUP_SCHEMA``), so the restatement replaces stream rows like for like; the hourly
rollups are also written as the warm tier's Parquet (``rollups_hourly``), with the distinct user ids
of each row so that any engine can merge unique users exactly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common.events import EVENT_ARROW_SCHEMA
from common.lake import hour_partition, rollups_hourly_path, spark_uri
from common.rollups import ROLLUP_KEYS, ROLLUP_SCHEMA
from common.settings import Settings


@dataclass
class HourlyRecompute:
    hour: datetime
    events: int
    minute_rollups: pa.Table  # ROLLUP_SCHEMA, for rollups_1m / rollups_1h
    raw_events: pa.Table  # EVENT_ARROW_SCHEMA, for events_raw
    hourly_rows: int
    warm_path: str
    seconds: float


def _rollup(events: DataFrame, unit: str, column: str) -> DataFrame:
    return events.groupBy(*ROLLUP_KEYS, F.date_trunc(unit, "timestamp").alias(column)).agg(
        F.count(F.lit(1)).alias("events"),
        F.sum("revenue").alias("revenue"),
        F.array_sort(F.collect_set("user_id")).alias("user_ids"),
    )


def recompute_hour(
    spark: SparkSession, settings: Settings, hour: datetime, archive_files: Sequence[str]
) -> HourlyRecompute:
    """Roll up the archived events of ``hour`` (the files its manifest lists) and write the warm hour."""
    started = time.perf_counter()
    hour = hour.astimezone(UTC)
    warm = f"{rollups_hourly_path(settings)}/{hour_partition(hour)}"
    if not archive_files:
        empty = pa.Table.from_pylist([], schema=ROLLUP_SCHEMA)
        return HourlyRecompute(hour, 0, empty, pa.Table.from_pylist([], schema=EVENT_ARROW_SCHEMA), 0, warm,
                               time.perf_counter() - started)
    events = spark.read.parquet(*[spark_uri(f) for f in archive_files]).select(*EVENT_ARROW_SCHEMA.names).cache()
    minute = _rollup(events, "minute", "minute").select(*ROLLUP_SCHEMA.names)
    minute_rollups = minute.toArrow().cast(ROLLUP_SCHEMA)
    hourly = _rollup(events, "hour", "hour")
    hourly.coalesce(1).write.mode("overwrite").option("compression", "zstd").parquet(spark_uri(warm))
    raw = events.toArrow().cast(EVENT_ARROW_SCHEMA)
    events.unpersist()
    return HourlyRecompute(
        hour=hour,
        events=raw.num_rows,
        minute_rollups=minute_rollups,
        raw_events=raw,
        hourly_rows=spark.read.parquet(spark_uri(warm)).count(),
        warm_path=warm,
        seconds=time.perf_counter() - started,
    )
