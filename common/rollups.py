"""The 1-minute rollup of events, shared by the stream job and the batch recompute.

Both layers must produce rows of the same shape so that a restatement replaces stream rows like for
like. Unique users travel as the distinct user ids of each group; the hot tier turns them into
mergeable ``uniq`` states (see ``sql/clickhouse/002_rollups_1m.sql``).

The rollup runs on Arrow tables: the stream job already holds each micro-batch as Arrow in the
driver, and grouping it there takes milliseconds where a second Spark job over the batch took
seconds — the difference between a 2-second and a 10-second dashboard freshness on two cores.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

ROLLUP_KEYS = ("tenant", "event", "country", "device", "page")
ROLLUP_SCHEMA = pa.schema(
    [
        ("tenant", pa.string()),
        ("event", pa.string()),
        ("minute", pa.timestamp("s", tz="UTC")),
        ("country", pa.string()),
        ("device", pa.string()),
        ("page", pa.string()),
        ("events", pa.uint64()),
        ("revenue", pa.float64()),
        ("user_ids", pa.list_(pa.string())),
    ]
)


def minute_rollups(events: pa.Table) -> pa.Table:
    """Events (columns of ``common.events.EVENT_ARROW_SCHEMA``) → rows of ``rollups_1m_ingest``."""
    minute = pc.floor_temporal(events["timestamp"], unit="minute").cast(pa.timestamp("s", tz="UTC"))
    keyed = pa.table({**{k: events[k] for k in ROLLUP_KEYS}, "minute": minute, "revenue": events["revenue"],
                      "user_id": events["user_id"]})
    # Events are counted as rows (mode "all"): a null revenue must never make an event count as zero.
    grouped = keyed.group_by([*ROLLUP_KEYS, "minute"], use_threads=False).aggregate(
        [("revenue", "count", pc.CountOptions(mode="all")), ("revenue", "sum"), ("user_id", "distinct")]
    )
    return pa.table(
        {
            "tenant": grouped["tenant"],
            "event": grouped["event"],
            "minute": grouped["minute"],
            "country": grouped["country"],
            "device": grouped["device"],
            "page": grouped["page"],
            "events": grouped["revenue_count"].cast(pa.uint64()),
            "revenue": grouped["revenue_sum"],
            "user_ids": grouped["user_id_distinct"],
        },
        schema=ROLLUP_SCHEMA,
    )
