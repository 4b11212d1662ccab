"""The speed layer: Kafka ``events`` → Spark Structured Streaming → hot tier and lake landing.

Two streaming queries read the topic independently, each with its own checkpoint:

* ``hot`` drops duplicate event ids within the watermark, discards events later than the watermark
  (counted as late), and per micro-batch writes the clean raw events and their 1-minute partial
  rollups to the hot tier. Every write carries a token derived from the micro-batch id, so a batch
  replayed after a crash is a no-op in ClickHouse: exactly once end to end.
* ``landing`` writes every parsed event, late ones too, as Parquet into the lake's landing area with
  Spark's file sink, whose ``_spark_metadata`` log makes the committed files exactly-once.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery, StreamingQueryListener
from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

from common.events import EVENT_ARROW_SCHEMA
from common.hot_store import HotStore, HotStoreError
from common.lake import landing_path, spark_uri
from common.rollups import minute_rollups
from common.settings import Settings
from common.spark import spark_session
from stream.shutdown import QUERY_STOP_SECONDS, STOP_SECONDS, stop_signals, stop_within

log = logging.getLogger(__name__)

KAFKA_VALUE_SCHEMA = StructType(
    [StructField(name, StringType()) for name in
     ("tenant", "event", "timestamp", "event_id", "user_id", "page", "country", "device", "properties", "received_at")]
    + [StructField("revenue", DoubleType())]
)
SCHEDULER_POOLS = Path(__file__).with_name("scheduler_pools.xml")


def parse_events(kafka: DataFrame) -> DataFrame:
    """Kafka records → typed events; records that are not events (null name or time) are dropped.

    A record holds a JSON array of events (as the ingestion API packs them) or a single event
    object (as any other producer may write); ``kafka_index`` is the event's position in its record.
    """
    value = F.col("value").cast("string")
    events = F.when(
        F.ltrim(value).startswith("["), F.from_json(value, ArrayType(KAFKA_VALUE_SCHEMA))
    ).otherwise(F.array(F.from_json(value, KAFKA_VALUE_SCHEMA)))
    parsed = kafka.select(
        F.posexplode(events).alias("kafka_index", "e"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
    ).select("e.*", "kafka_partition", "kafka_offset", "kafka_index")
    typed = parsed.withColumn("timestamp", F.col("timestamp").cast("timestamp")).withColumn(
        "received_at", F.col("received_at").cast("timestamp")
    )
    return typed.where(F.col("event").isNotNull() & F.col("timestamp").isNotNull() & F.col("event_id").isNotNull())


def stream_id(checkpoint_dir: str) -> str:
    """A stable id per checkpoint: tokens of a new checkpoint never collide with an old one's."""
    path = Path(checkpoint_dir) / "stream_id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(uuid.uuid4().hex)
    return path.read_text().strip()


def with_retry(action: Callable[[], None], what: str, progress: Callable[[str], None]) -> None:
    """Wait for the hot store instead of failing the batch: the stream catches up when it returns."""
    delay = 1.0
    while True:
        try:
            action()
            return
        except HotStoreError as exc:
            progress(f"{what}: {exc}; retrying in {delay:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


class HotTierWriter:
    """``foreachBatch`` target of the ``hot`` query."""

    def __init__(self, store: HotStore, token_prefix: str, progress: Callable[[str], None]) -> None:
        self._store = store
        self._prefix = token_prefix
        self._progress = progress

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        raw = batch.select(*EVENT_ARROW_SCHEMA.names).toArrow()
        if raw.num_rows == 0:
            return
        collected = time.perf_counter()
        rollups = minute_rollups(raw)
        rolled = time.perf_counter()
        with_retry(lambda: self._store.insert_arrow("events_raw", raw, token=f"{self._prefix}:{batch_id}:raw"),
                   "events_raw", self._progress)
        with_retry(
            lambda: self._store.insert_arrow(
                "rollups_1m_ingest", rollups, token=f"{self._prefix}:{batch_id}:rollups_1m"),
            "rollups_1m", self._progress)
        done = time.perf_counter()
        self._progress(
            f"batch {batch_id}: {raw.num_rows:,} events → {rollups.num_rows:,} minute rollups in "
            f"{done - started:.2f}s (read+dedup {collected - started:.2f}s, rollup {rolled - collected:.3f}s, "
            f"insert {done - rolled:.2f}s)"
        )


class ProgressRecorder(StreamingQueryListener):
    """Records each micro-batch (rows, rows later than the watermark) in ``stream_progress``."""

    def __init__(self, store: HotStore, token_prefix: str) -> None:
        self._store = store
        self._prefix = token_prefix

    def onQueryStarted(self, event) -> None:  # Spark's listener API
        pass

    def onQueryProgress(self, event) -> None:
        p = event.progress
        late = sum(op.numRowsDroppedByWatermark for op in p.stateOperators)
        watermark = (p.eventTime or {}).get("watermark")
        row = {
            "query_name": [p.name or ""],
            "batch_id": [p.batchId],
            "finished_at": [_parse_time(p.timestamp)],
            "input_rows": [p.numInputRows],
            "late_rows": [late],
            "duration_ms": [int((p.durationMs or {}).get("triggerExecution", 0))],
            "watermark": [_parse_time(watermark) if watermark else None],
            "end_offsets": [(p.sources[0].endOffset or "") if p.sources else ""],  # consumer lag in GET /metrics
        }
        table = pa.table(row, schema=pa.schema([
            ("query_name", pa.string()), ("batch_id", pa.uint64()), ("finished_at", pa.timestamp("ms", "UTC")),
            ("input_rows", pa.uint64()), ("late_rows", pa.uint64()), ("duration_ms", pa.uint64()),
            ("watermark", pa.timestamp("ms", "UTC")), ("end_offsets", pa.string()),
        ]))
        try:
            self._store.insert_arrow("stream_progress", table, token=f"{self._prefix}:{p.name}:{p.batchId}:progress")
        except HotStoreError as exc:
            log.warning("could not record progress of batch %s: %s", p.batchId, exc)

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        pass


def _parse_time(text: str) -> datetime:
    """A time as Spark's progress events write it (ISO-8601 with Z)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def landing_writer(events: DataFrame, settings: Settings, checkpoint: str) -> DataStreamWriter:
    """The lake landing sink: zstd Parquet in ``dt=/hour=`` folders of the event's own time, whose
    ``_spark_metadata`` log is the commit record readers rely on (trigger and start are the caller's)."""
    return (
        events.withColumn("dt", F.date_format("timestamp", "yyyy-MM-dd"))
        .withColumn("hour", F.date_format("timestamp", "HH"))
        .writeStream.format("parquet")
        .option("compression", "zstd")
        .partitionBy("dt", "hour")
        .option("path", spark_uri(landing_path(settings)))
        .option("checkpointLocation", checkpoint)
    )


def start_stream(
    spark: SparkSession,
    settings: Settings,
    store: HotStore,
    progress: Callable[[str], None] = print,
) -> list[StreamingQuery]:
    """Start the ``hot`` and ``landing`` queries and return them (running)."""
    checkpoints = settings.effective_checkpoint_dir
    prefix = stream_id(checkpoints)
    spark.streams.addListener(ProgressRecorder(store, prefix))
    kafka = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
        .option("subscribe", settings.kafka_topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", settings.stream_max_offsets_per_trigger)
        .load()
    )
    events = parse_events(kafka)
    watermark = f"{settings.stream_watermark_minutes} minutes"
    spark.sparkContext.setLocalProperty("spark.scheduler.pool", "hot")  # see scheduler_pools.xml
    hot = (
        events.withWatermark("timestamp", watermark)
        .dropDuplicatesWithinWatermark(["event_id"])
        .writeStream.queryName("hot")
        .foreachBatch(HotTierWriter(store, prefix, progress))
        .option("checkpointLocation", f"{checkpoints}/hot")
        .trigger(processingTime=f"{settings.stream_trigger_seconds} seconds")
        .start()
    )
    spark.sparkContext.setLocalProperty("spark.scheduler.pool", "landing")
    landing = (
        landing_writer(events, settings, f"{checkpoints}/landing")
        .queryName("landing")
        .trigger(processingTime=f"{settings.stream_landing_trigger_seconds} seconds")
        .start()
    )
    return [hot, landing]


def run_stream(
    settings: Settings,
    store: HotStore,
    jars: Sequence[str],
    progress: Callable[[str], None] = print,
    ready_file: Path | None = None,
) -> None:
    """Run the stream job in the foreground until it is stopped or a query fails.

    ``ready_file`` receives this process's pid once both queries run: the stack's readiness check.
    On SIGTERM or Ctrl-C the queries and the Spark session are stopped within ``STOP_SECONDS``;
    if that hangs, the process exits regardless (``os._exit``) and the JVM's watchdog removes it.
    """
    stop = threading.Event()
    with stop_signals(stop):
        spark = spark_session(settings, "lakehouse-stream", jars, scheduler_pools=SCHEDULER_POOLS)
        spark.conf.set("spark.sql.streaming.stopTimeout", f"{int(QUERY_STOP_SECONDS * 1000)}ms")
        queries = start_stream(spark, settings, store, progress) if not stop.is_set() else []
        if ready_file is not None and queries:
            ready_file.parent.mkdir(parents=True, exist_ok=True)
            ready_file.write_text(str(os.getpid()))
        if queries:
            progress(
                f"stream running: {settings.kafka_topic}@{settings.kafka_bootstrap} → hot tier + "
                f"{landing_path(settings)} (watermark {settings.stream_watermark_minutes} min, "
                f"trigger {settings.stream_trigger_seconds}s)"
            )
        error: Exception | None = None
        try:
            while queries and not stop.is_set():
                if spark.streams.awaitAnyTermination(1.0):  # a second at a time: signals are seen
                    break
        except Exception as exc:  # a failed query, or the JVM going away during a stop
            error = exc
        if stop.is_set():
            progress(f"stopping the stream (at most {STOP_SECONDS:.0f}s)")
            started = time.monotonic()
            if not stop_within(spark, queries, STOP_SECONDS, progress):
                progress(f"the stream did not stop within {STOP_SECONDS:.0f}s; exiting (its JVM is killed)")
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(1)
            progress(f"stream stopped in {time.monotonic() - started:.1f}s")
            return
    for query in queries:
        if query.isActive:
            query.stop()
    failed = [q for q in queries if q.exception() is not None]
    if failed:
        raise RuntimeError(f"stream query {failed[0].name} failed: {failed[0].exception()}")
    if error is not None:
        raise error
