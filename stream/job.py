"""The speed layer: Kafka ``events`` → Spark Structured Streaming → hot tier and lake landing.

Every Kafka record goes through the event contract first (``stream.contract``: the rules of
``POST /events``, applied to whatever any producer wrote; the API's records column-wise). Two
streaming queries read the topic independently, each with its own checkpoint:

* ``hot`` drops duplicate ``(tenant, event_id)`` within the watermark (``stream.dedup``), discards events
  later than the watermark (counted as late), and per micro-batch writes the clean raw events and their
  1-minute partial rollups to the hot tier. Every write carries a token derived from the micro-batch
  id, so a batch replayed after a crash is a no-op in ClickHouse: exactly once end to end. Events of
  hours the batch layer closed by the wall clock (``hour_closings``) are late too.
* ``landing`` judges each record once for two sinks (``stream.landing``):
  - every record or event that breaks the contract goes to the dead-letter topic with its reason and
    source partition/offset, counted by reason in ``stream_dead_letters``
    (``lakehouse_stream_dead_letter_events`` in GET /metrics). Invalid input never reaches the
    watermark: an event dated 2099 is dead-lettered, it cannot freeze the speed layer;
  - every valid event, late ones too, lands as Parquet in the lake's landing area through Spark's own
    file sink (``stream/jvm``'s ``LandingSink``), whose ``_spark_metadata`` log makes the committed files
    exactly-once.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from common import day_rollups, session_pieces
from common.events import EVENT_ARROW_SCHEMA
from common.hot_store import HotStore, run_commands
from common.lake import landing_path
from common.rollups import minute_rollups
from common.settings import Settings
from common.spark import spark_session
from stream.checkpoints import clear_unstarted, write_checkpoints_directly
from stream.dedup import checkpoint_dedup, drop_duplicates
from stream.landing import (
    DeadLetters,
    DeadLetterWriter,
    forget_retired_progress,
    land_without_sorting,
    landing_writer,
    retire_dead_letter_query,
)
from stream.records import contract_rows, valid_events
from stream.retry import PermanentHotStoreError, with_retry
from stream.shutdown import QUERY_STOP_SECONDS, STOP_SECONDS, stop_signals, stop_within

log = logging.getLogger(__name__)

SCHEDULER_POOLS = Path(__file__).with_name("scheduler_pools.xml")


def stream_id(checkpoint_dir: str) -> str:
    """A stable id per checkpoint: tokens of a new checkpoint never collide with an old one's."""
    path = Path(checkpoint_dir) / "stream_id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(uuid.uuid4().hex)
    return path.read_text().strip()


CLOSED_THROUGH_SQL = "SELECT count() AS seals, max(closed_through) AS closed_through FROM hour_closings"


def drop_closed(raw: pa.Table, closed_through: datetime | None) -> pa.Table:
    """The events of ``raw`` that are not older than ``closed_through`` (all when no hour was sealed)."""
    if closed_through is None or raw.num_rows == 0:
        return raw
    column = raw.column("timestamp")
    return raw.filter(pc.greater_equal(column, pa.scalar(closed_through, type=column.type)))


def _in_background(action: Callable[[], datetime | None]) -> Future[datetime | None]:
    """``action`` on a daemon thread of its own (one that waits for an unreachable hot node never holds the process's
    exit, which a pool's worker would)."""
    future: Future[datetime | None] = Future()

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(action())
        except BaseException as exc:  # handed to the caller, which raises it from result()
            future.set_exception(exc)

    threading.Thread(target=run, name="hot-seal-read", daemon=True).start()
    return future


class HotTierWriter:
    """``foreachBatch`` target of the ``hot`` query.

    Before writing, each micro-batch reads the newest ``closed_through`` the batch layer sealed
    (``hour_closings``, ``batch.hour_state``: hours closed by the wall clock while the watermark stood
    still) and drops older events: they are late, like events behind the watermark (landed, counted
    by the batch layer). It reads it after Spark fixed the batch's offsets (Spark calls the sink only
    then), which is what makes the seal safe: a batch holding a record written after the seal reads the
    seal. The read runs while Spark computes the batch, so it costs the batch no time of its own.
    ``late_by_batch`` holds the count per batch id for the progress listener.

    After the two inserts, the hours written are marked for the session pieces and the day copies
    (``session_pieces.written``, ``day_rollups.written``: builds of those hours are not read any more) in
    one call to the hot node.
    """

    def __init__(self, store: HotStore, token_prefix: str, progress: Callable[[str], None]) -> None:
        self._store = store
        self._prefix = token_prefix
        self._progress = progress
        self.late_by_batch: dict[int, int] = {}

    def _closed_through(self) -> datetime | None:
        rows: list[dict] = []

        def read() -> None:
            rows[:] = self._store.query_arrow(CLOSED_THROUGH_SQL).to_pylist()

        with_retry(read, "hour_closings", self._progress)
        if not rows or not rows[0]["seals"]:
            return None
        value = rows[0]["closed_through"]
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        sealed = _in_background(self._closed_through)  # the offsets are fixed: read while Spark computes
        raw = batch.select(*EVENT_ARROW_SCHEMA.names).toArrow()
        if raw.num_rows == 0:
            return  # an empty batch writes nothing: its read just ends
        collected = time.perf_counter()
        self.write(raw, batch_id, sealed.result(), started, collected)

    def write(self, raw: pa.Table, batch_id: int, closed_through: datetime | None,
              started: float | None = None, collected: float | None = None) -> None:
        """Write one micro-batch's events (``raw``, in ``EVENT_ARROW_SCHEMA``) given the newest seal: events and
        minute rollups with the batch's tokens (a replay is a no-op), then the marks of the hours written."""
        collected = collected if collected is not None else time.perf_counter()
        started = started if started is not None else collected
        sealed = time.perf_counter()
        kept = drop_closed(raw, closed_through)
        if kept.num_rows < raw.num_rows:
            self.late_by_batch[batch_id] = raw.num_rows - kept.num_rows
            for stale in list(self.late_by_batch)[:-1000]:  # batches whose progress was never recorded
                self.late_by_batch.pop(stale, None)
            self._progress(f"batch {batch_id}: {raw.num_rows - kept.num_rows:,} events older than "
                           f"{closed_through:%Y-%m-%d %H:%M} UTC (hours closed by the wall clock) left to the batch "
                           "layer")
        raw = kept
        if raw.num_rows == 0:
            return
        rollups = minute_rollups(raw)
        rolled = time.perf_counter()
        with_retry(lambda: self._store.insert_arrow("events_raw", raw, token=f"{self._prefix}:{batch_id}:raw"),
                   "events_raw", self._progress)
        raw_done = time.perf_counter()
        with_retry(
            lambda: self._store.insert_arrow(
                "rollups_1m_ingest", rollups, token=f"{self._prefix}:{batch_id}:rollups_1m"),
            "rollups_1m", self._progress)
        inserted = time.perf_counter()
        hours = pc.unique(pc.floor_temporal(raw.column("timestamp"), unit="hour")).to_pylist()
        marks = [m for m in (session_pieces.written_statement(hours), day_rollups.written_statement(hours)) if m]
        with_retry(lambda: run_commands(self._store, marks), "session_piece_hours, rollups_1h_by_day_marks",
                   self._progress)
        done = time.perf_counter()
        self._progress(
            f"batch {batch_id}: {raw.num_rows:,} events → {rollups.num_rows:,} minute rollups in "
            f"{done - started:.2f}s (read+dedup {collected - started:.2f}s, rollup {rolled - sealed:.3f}s, "
            f"insert {done - rolled:.2f}s); hot node: closed-through {(sealed - collected) * 1000:.0f}ms, "
            f"events_raw {(raw_done - rolled) * 1000:.0f}ms, rollups_1m {(inserted - raw_done) * 1000:.0f}ms, "
            f"marks {(done - inserted) * 1000:.0f}ms"
        )


#: A row of ``stream_progress`` (sql/clickhouse/003_stream_progress.sql, 010_stream_progress_offsets.sql).
STREAM_PROGRESS = pa.schema([
    ("query_name", pa.string()), ("batch_id", pa.uint64()), ("finished_at", pa.timestamp("ms", "UTC")),
    ("input_rows", pa.uint64()), ("late_rows", pa.uint64()), ("duration_ms", pa.uint64()),
    ("watermark", pa.timestamp("ms", "UTC")), ("end_offsets", pa.string()),
])
PROGRESS_WAIT_SECONDS = 120.0  # a hot node restarting; longer, and the listener (not the stream) gives up on one row


class ProgressRecorder(StreamingQueryListener):
    """Records each micro-batch (rows, rows later than the watermark) in ``stream_progress``, and logs where a
    micro-batch's time went (``stage_split``) for every ``hot`` batch with input and the other queries' batches of
    ``STAGE_LOG_RECORDS`` records or more."""

    def __init__(self, store: HotStore, token_prefix: str, hot_late_by_batch: dict[int, int] | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self._store = store
        self._prefix = token_prefix
        self._hot_late = hot_late_by_batch if hot_late_by_batch is not None else {}
        self._progress = progress

    def _log(self, line: str) -> None:
        (self._progress or log.info)(line)

    def onQueryStarted(self, event) -> None:  # Spark's listener API
        pass

    def onQueryProgress(self, event) -> None:
        p = event.progress
        late = sum(op.numRowsDroppedByWatermark for op in p.stateOperators)
        if p.name == "hot":
            late += self._hot_late.pop(p.batchId, 0)  # events of hours closed by the wall clock
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
        table = pa.table(row, schema=STREAM_PROGRESS)
        recording = time.perf_counter()
        try:  # waited for like the writer's inserts: the row carries the batch's late count, which nothing else keeps
            with_retry(lambda: self._store.insert_arrow(
                "stream_progress", table, token=f"{self._prefix}:{p.name}:{p.batchId}:progress"),
                f"progress of {p.name} batch {p.batchId}", self._log, wait_at_most=PROGRESS_WAIT_SECONDS)
        except PermanentHotStoreError as exc:
            log.warning("could not record progress of batch %s: %s", p.batchId, exc)
        if self._progress is not None and ((p.numInputRows or 0) >= STAGE_LOG_RECORDS
                                           or (p.name == "hot" and p.numInputRows)):
            self._progress(f"{stage_split(p)}; progress row {(time.perf_counter() - recording) * 1000:.0f}ms")

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        pass


#: Kafka records (up to 200 events each): the landing's and dead letters' busy batches, not their idle ones. Every
#: ``hot`` batch with input is logged (beside the hot sink's own line of the same batch): its split is what freshness
#: is made of.
STAGE_LOG_RECORDS = 500


def stage_split(p) -> str:  # a pyspark StreamingQueryProgress
    """One log line with Spark's own split of a micro-batch: the whole batch (``addBatch``: the Kafka read, the
    contract, the sink), the de-duplication state's share of it (updates, removals, commit) and the bookkeeping."""
    durations = p.durationMs or {}
    updates = sum(op.allUpdatesTimeMs for op in p.stateOperators)
    removals = sum(op.allRemovalsTimeMs for op in p.stateOperators)
    commit = sum(op.commitTimeMs for op in p.stateOperators)
    keys = sum(op.numRowsTotal for op in p.stateOperators)
    counted = f", {keys:,} keys" if keys else ""  # 0 when RocksDB does not count its rows (trackTotalNumberOfRows)
    state = (f"; dedup state: updates {updates / 1000:.2f}s, removals {removals / 1000:.2f}s, commit "
             f"{commit / 1000:.2f}s{counted}") if p.stateOperators else ""
    return (f"progress {p.name} batch {p.batchId}: {p.numInputRows:,} records in "
            f"{durations.get('triggerExecution', 0) / 1000:.2f}s (addBatch {durations.get('addBatch', 0) / 1000:.2f}s, "
            f"offsets+planning {(durations.get('latestOffset', 0) + durations.get('queryPlanning', 0)) / 1000:.2f}s, "
            f"walCommit+commitOffsets {(durations.get('walCommit', 0) + durations.get('commitOffsets', 0)) / 1000:.2f}s"
            f"{state})")


def _parse_time(text: str) -> datetime:
    """A time as Spark's progress events write it (ISO-8601 with Z)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def start_stream(
    spark: SparkSession,
    settings: Settings,
    store: HotStore,
    progress: Callable[[str], None] = print,
) -> list[StreamingQuery]:
    """Start the ``hot`` and ``landing`` queries and return them (running)."""
    checkpoints = settings.effective_checkpoint_dir
    prefix = stream_id(checkpoints)
    for query in ("hot", "landing"):  # a first start cut short would fail every later start
        leftovers = clear_unstarted(f"{checkpoints}/{query}")
        if leftovers:
            progress(f"checkpoint {query}: no micro-batch was ever planned; cleared what its first start left "
                     f"({', '.join(leftovers[:5])}{' …' if len(leftovers) > 5 else ''})")
    dedup = checkpoint_dedup(f"{checkpoints}/hot") or settings.stream_dedup
    if dedup != settings.stream_dedup:
        progress(f"checkpoint hot: its de-duplication state was written by the `{dedup}` way, which it keeps "
                 f"(LAKEHOUSE_STREAM_DEDUP={settings.stream_dedup} applies to a new checkpoint; docs/operations.md)")
    hot_writer = HotTierWriter(store, prefix, progress)
    spark.streams.addListener(ProgressRecorder(store, prefix, hot_writer.late_by_batch, progress))

    def kafka(max_offsets: int | None = None) -> DataFrame:
        reader = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
            .option("subscribe", settings.kafka_topic)
            .option("startingOffsets", "earliest")
            .option("kafka.fetch.max.wait.ms", settings.stream_kafka_fetch_wait_ms)
        )
        return (reader if max_offsets is None else reader.option("maxOffsetsPerTrigger", max_offsets)).load()

    # The record cap bounds the hot query's micro-batches (freshness); the landing reads whatever has arrived at
    # its (slower) trigger, so a burst never leaves it behind the hot tier.
    events = valid_events(contract_rows(kafka(settings.stream_max_offsets_per_trigger), settings))
    watermark = f"{settings.stream_watermark_minutes} minutes"
    spark.sparkContext.setLocalProperty("spark.scheduler.pool", "hot")  # see scheduler_pools.xml
    hot = (
        drop_duplicates(events.withWatermark("timestamp", watermark), settings.stream_watermark_minutes, dedup)
        .writeStream.queryName("hot")
        .foreachBatch(hot_writer)
        .option("checkpointLocation", f"{checkpoints}/hot")
        .trigger(processingTime=f"{settings.stream_trigger_seconds} seconds")
        .start()
    )
    spark.sparkContext.setLocalProperty("spark.scheduler.pool", "landing")
    dead_letters = DeadLetterWriter(settings, store, prefix, progress)
    retire_dead_letter_query(spark, settings, checkpoints, dead_letters, progress)
    forget_retired_progress(store, progress)
    letters = spark.sparkContext.accumulator([], DeadLetters())
    # The landing's batch on few cores at once (one by default): with a task per Kafka partition it took both cores for
    # seconds every 30 s, and the hot micro-batches beside it ran 2-4 times as long (docs/benchmarks.md).
    landing_rows = contract_rows(kafka(), settings, rejections_to=letters).coalesce(settings.stream_landing_tasks)
    landing = (
        landing_writer(landing_rows, settings, f"{checkpoints}/landing", dead_letters, letters)
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
        write_checkpoints_directly(spark)
        land_without_sorting(spark)
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
