"""The hot query's de-duplication of ``(tenant, event_id)`` within the watermark, in one of two ways.

``buckets`` (the default) is the stream's own operator, ``stream/jvm``'s ``FirstSeenByBucket`` on Spark's
``transformWithState``: the semantics of Spark's ``dropDuplicatesWithinWatermark`` (``spark``), except that a key
may be remembered up to a minute of event time longer, and without its scan of the whole state at every
micro-batch, which cost seconds per batch once the stream had run at a steady rate for a while
(``docs/benchmarks.md``). The two keep their state in the hot query's checkpoint in different shapes: a checkpoint
keeps the way it was started with (``checkpoint_dedup``), so upgrading never breaks a running stream.
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from stream.checkpoints import local_folder
from stream.jvm_classes import stream_class

OPERATOR_CLASS = "lakehouse.stream.FirstSeenByBucket"
WAYS = ("buckets", "spark")

#: Spark's name of each way's operator in a checkpoint's state metadata (``state/0/_metadata``).
_OPERATOR_NAMES = {"transformWithStateExec": "buckets", "dedupeWithinWatermark": "spark"}


def drop_duplicates(events: DataFrame, delay_minutes: int, way: str) -> DataFrame:
    """``events`` (with a watermark on ``timestamp`` of ``delay_minutes``) without repeated ``(tenant, event_id)``;
    events later than the watermark are dropped and counted as late (``numRowsDroppedByWatermark``) either way."""
    if way == "spark":
        return events.dropDuplicatesWithinWatermark(["tenant", "event_id"])
    if way != "buckets":
        raise ValueError(f"unknown de-duplication {way!r}; one of {', '.join(WAYS)}")
    spark = events.sparkSession
    operator = stream_class(spark, OPERATOR_CLASS, ", or set LAKEHOUSE_STREAM_DEDUP=spark")
    return DataFrame(operator.apply(events._jdf, delay_minutes * 60_000), spark)


def checkpoint_dedup(checkpoint: str) -> str | None:
    """The way an existing hot checkpoint de-duplicates (``buckets``/``spark``), or None when it holds no state yet
    or is not on a local disk (then ``LAKEHOUSE_STREAM_DEDUP`` must name the way it was started with)."""
    folder = local_folder(checkpoint)
    metadata = folder / "state" / "0" / "_metadata" if folder is not None else None
    if metadata is None or not metadata.is_dir():
        return None
    for path in sorted(p for p in metadata.rglob("*") if p.is_file() and not p.name.startswith(".")):
        text = path.read_text(errors="replace")
        for name, way in _OPERATOR_NAMES.items():
            if f'"{name}"' in text:
                return way
    return None
