"""The 1-minute rollup of events, shared by the stream job and the batch recompute.

Both layers must produce rows of the same shape so that a restatement replaces stream rows like for
like. Unique users travel as the distinct user ids of each group; the hot tier turns them into
mergeable ``uniq`` states (see ``sql/clickhouse/002_rollups_1m.sql``).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

ROLLUP_KEYS = ("tenant", "event", "country", "device", "page")


def minute_rollups(events: DataFrame) -> DataFrame:
    """Columns of ``rollups_1m_ingest``: keys, minute, events, revenue, user_ids."""
    return (
        events.groupBy(*ROLLUP_KEYS, F.window("timestamp", "1 minute").start.alias("minute"))
        .agg(
            F.count(F.lit(1)).cast("long").alias("events"),
            F.sum("revenue").cast("double").alias("revenue"),
            F.collect_set("user_id").alias("user_ids"),
        )
        .select("tenant", "event", "minute", "country", "device", "page", "events", "revenue", "user_ids")
    )
