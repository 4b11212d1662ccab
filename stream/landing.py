"""The ``landing`` query: each Kafka record judged once by the event contract, for two sinks.

Until the eleventh session (2026-11-27) the dead letters had a streaming query of their own, which read every
record from Kafka again, shipped it to a Python worker and judged it again, on the same two cores as the ``hot``
query: about as much batch time as the hot query's, for rows that are almost never there (docs/benchmarks.md). Now
the landing's micro-batch is judged once: its valid events (late ones too) land in the lake's landing area through
Spark's own file sink, and the same pass hands its rejections to the driver, which sends them to the dead-letter
topic.

``retire_dead_letter_query`` moves a stream of the earlier shape onto this one without losing a dead letter.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
from pyspark.accumulators import Accumulator, AccumulatorParam
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import DataStreamWriter

from common.hot_store import HotStore
from common.lake import landing_path, spark_uri
from common.settings import Settings
from common.spark import conf_unless_chosen
from stream.checkpoints import local_folder
from stream.jvm_classes import stream_class
from stream.records import contract_rows, valid_events
from stream.retry import with_retry

DEAD_LETTER_COUNTS = pa.schema([("batch_id", pa.uint64()), ("finished_at", pa.timestamp("ms", "UTC")),
                                ("reason", pa.string()), ("events", pa.uint64())])
SINK_CLASS = "lakehouse.stream.LandingSink"


class DeadLetters(AccumulatorParam):
    """A pyspark accumulator of dead letters (JSON text): the contract's Python workers add a batch's rejections to
    it (``RecordContract(rejections_to=…)``), and the driver reads them once the micro-batch's job is done. Only the
    successful attempt of a task counts, so a retried task does not send its letters twice."""

    def zero(self, value: list[str]) -> list[str]:
        return []

    def addInPlace(self, value1: list[str], value2: list[str]) -> list[str]:
        value1.extend(value2)
        return value1


class DeadLetterWriter:
    """Dead letters (``dead_letter`` JSON) to the dead-letter topic, then counted by reason in ``stream_dead_letters``.

    The topic write is at least once (a batch replayed after a crash sends its dead letters again;
    each carries its source partition/offset/index, so a reader can tell); the counts carry a token,
    so a replay does not count twice.
    """

    def __init__(self, settings: Settings, store: HotStore, token_prefix: str, progress: Callable[[str], None]) -> None:
        self._settings = settings
        self._store = store
        self._prefix = token_prefix
        self._progress = progress
        self._producer = None

    def _kafka(self):  # kafka-python has no type hints
        from kafka import KafkaProducer

        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self._settings.kafka_bootstrap, acks="all",
                                           linger_ms=5, retries=5)
        return self._producer

    def __call__(self, letters: list[str], batch_id: int, namespace: str = "landing") -> None:
        """Send and count the ``letters`` of micro-batch ``batch_id``; ``namespace`` keeps the counts' insert tokens
        apart from those of other batch-id sequences (the retired query's catch-up)."""
        if not letters:
            return
        producer = self._kafka()
        futures = [producer.send(self._settings.kafka_dlq_topic, value=letter.encode()) for letter in letters]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=0)  # a failed delivery fails the batch: Spark retries it, nothing is lost
        by_reason: dict[str, int] = {}
        for letter in letters:
            reason = orjson.loads(letter)["reason_class"]
            by_reason[reason] = by_reason.get(reason, 0) + 1
        now = datetime.now(UTC)
        counts = pa.table({"batch_id": [batch_id] * len(by_reason), "finished_at": [now] * len(by_reason),
                           "reason": list(by_reason), "events": list(by_reason.values())}, schema=DEAD_LETTER_COUNTS)
        with_retry(lambda: self._store.insert_arrow(
            "stream_dead_letters", counts, token=f"{self._prefix}:{namespace}:{batch_id}:dead_letters"),
            "stream_dead_letters", self._progress)
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(by_reason.items()))
        self._progress(f"dead letters {namespace} batch {batch_id}: {len(letters):,} to "
                       f"{self._settings.kafka_dlq_topic} ({reasons})")


#: Spark's setting for the Parquet files a write task keeps open at once, one per ``dt``/``hour`` folder it writes.
#: At 0 (Spark's default) a task sorts its rows by folder first and writes one file after another, and a batch holds
#: a few hours: its rows now go straight to their folders' files, and the landing's batch of a 3 M-event backlog takes
#: 9 % less time (docs/benchmarks.md). Past this many folders in one task, Spark sorts the rest as before (spilling to
#: disk as it must), so the files are the same (one per folder and task). Few, because an open file holds up to a row
#: group (128 MiB of encoded pages) before it writes one: 4 keep that under 512 MiB of the stream's 2 GiB heap
#: whatever backlog a batch lands, and cover the current hour with late events of the hours before it.
OPEN_FILES_KEY = "spark.sql.maxConcurrentOutputFileWriters"
OPEN_FILES = 4


def land_without_sorting(spark: SparkSession) -> str:
    """Write the landing's folders side by side (``OPEN_FILES``) unless ``LAKEHOUSE_SPARK_CONF`` set
    ``OPEN_FILES_KEY``; returns the value in use."""
    return conf_unless_chosen(spark, OPEN_FILES_KEY, str(OPEN_FILES))


def with_partitions(events: DataFrame) -> DataFrame:
    """The landing's folders: ``dt=`` and ``hour=`` of the event's own time in UTC.

    Both from the instant's microseconds, whatever the session's time zone: formatting the instant as text
    per event (``date_format``) was 6% of the stream JVM's CPU at a backlog, and ``to_date``/``hour`` still built
    a zoned date-time per event (profiles, docs/benchmarks.md). ``dt`` is a date, which Spark writes in the folder's
    name as ``yyyy-MM-dd`` once per folder."""
    micros = F.unix_micros("timestamp")
    return (events.withColumn("dt", F.date_from_unix_date(F.floor(micros / 86_400_000_000).cast("int")))
            .withColumn("hour", F.lpad(F.pmod(F.floor(micros / 3_600_000_000), 24).cast("string"), 2, "0")))


class LandingWriter:
    """``foreachBatch`` target of the ``landing`` query.

    Its rows are the contract's valid events; the same pass adds the batch's rejections to ``letters`` (an
    accumulator of ``DeadLetters``), so each record is read and judged once for both sinks, and nothing is cached.
    The landing is Spark's file sink run per batch (``stream/jvm``'s ``LandingSink``): a batch id its
    ``_spark_metadata`` log holds writes nothing again, so a replay after a crash lands once. The dead letters are
    sent after the landing: a batch replayed after a crash between the two finds itself committed, so it is run to
    Spark's ``noop`` sink only to judge its records again and send their dead letters (at least once, like every
    topic write of the stream). Without ``dead_letters`` (tests replaying events) the batch only lands.
    """

    def __init__(self, settings: Settings, dead_letters: DeadLetterWriter | None = None,
                 letters: Accumulator | None = None) -> None:
        if (dead_letters is None) != (letters is None):
            raise ValueError("the dead letters' writer and their accumulator go together")
        self._path = spark_uri(landing_path(settings))
        self._dead_letters = dead_letters
        self._letters = letters
        self._sink = None

    def _landing_sink(self, batch: DataFrame):  # a py4j JavaObject of SINK_CLASS
        if self._sink is None:
            self._sink = stream_class(batch.sparkSession, SINK_CLASS)(batch._jdf, self._path)
        return self._sink

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        events = with_partitions(valid_events(batch) if "dead_letter" in batch.columns else batch)
        sink = self._landing_sink(events)
        if self._letters is None:
            sink.addBatch(batch_id, events._jdf)
            return
        self._letters.value = []
        if sink.committed(batch_id):
            events.write.format("noop").mode("overwrite").save()
        else:
            sink.addBatch(batch_id, events._jdf)
        self._dead_letters(list(self._letters.value), batch_id)


def landing_writer(rows: DataFrame, settings: Settings, checkpoint: str, dead_letters: DeadLetterWriter | None = None,
                   letters: Accumulator | None = None) -> DataStreamWriter:
    """The ``landing`` query's sink over ``rows`` (the contract's valid events, its rejections added to ``letters``)
    with its checkpoint; the trigger, name and start are the caller's."""
    writer = LandingWriter(settings, dead_letters, letters)
    return rows.writeStream.foreachBatch(writer).option("checkpointLocation", checkpoint)


def committed_offsets(checkpoint: Path) -> dict[str, dict[str, int]] | None:
    """The Kafka end offsets (``{topic: {partition: offset}}``) of the query's last committed micro-batch, or None
    when it committed none. An offset-log entry is ``v1``, the batch's metadata, then one line per source."""
    commits = checkpoint / "commits"
    batches = [int(p.name) for p in commits.iterdir() if p.name.isdigit()] if commits.is_dir() else []
    if not batches:
        return None
    lines = (checkpoint / "offsets" / str(max(batches))).read_text().splitlines()
    return json.loads(lines[2])


RETIRED_PROGRESS_SQL = "SELECT count() AS n FROM stream_progress WHERE query_name = 'dead_letters'"
FORGET_RETIRED_PROGRESS = ("ALTER TABLE stream_progress DELETE WHERE query_name = 'dead_letters' "
                           "SETTINGS mutations_sync = 2")


def forget_retired_progress(store: HotStore, progress: Callable[[str], None]) -> None:
    """Delete the retired ``dead_letters`` query's rows in ``stream_progress``, if any: else GET /metrics would show
    its last batch ageing and its lag growing for the table's 30 days, an alarm about a query that no longer runs."""
    rows: list[dict] = []
    with_retry(lambda: rows.extend(store.query_arrow(RETIRED_PROGRESS_SQL).to_pylist()), "stream_progress", progress)
    if rows and rows[0]["n"]:
        with_retry(lambda: store.command(FORGET_RETIRED_PROGRESS), "stream_progress", progress)
        progress(f"stream_progress: the retired `dead_letters` query's {rows[0]['n']:,} rows deleted")


def retire_dead_letter_query(spark: SparkSession, settings: Settings, checkpoints: str, dead_letters: DeadLetterWriter,
                             progress: Callable[[str], None]) -> None:
    """Retire the checkpoint of the former ``dead_letters`` query (``<checkpoints>/dead_letters``), once.

    The ``landing`` query now sends the dead letters, from where its own checkpoint stands. Records the landing
    had read but the old query had not judged yet are judged here first, in one batch read of Kafka, and their
    dead letters sent (the old query ahead of the landing only means a few letters sent twice, as a replay would).
    Then the folder becomes ``dead_letters.retired``. A checkpoint that is not on a local disk is left as it is,
    with a message: it must be compared by hand (docs/operations.md).
    """
    folder = local_folder(f"{checkpoints}/dead_letters")
    landing = local_folder(f"{checkpoints}/landing")
    if folder is None or landing is None:
        if "://" in checkpoints:
            progress(f"checkpoints in {checkpoints}: a `dead_letters` query of an earlier version is not looked for "
                     "there (docs/operations.md: upgrading from three queries)")
        return
    if not folder.is_dir():
        return
    judged = committed_offsets(folder) or {}
    landed = committed_offsets(landing) or {}
    start: dict[str, dict[str, int]] = {}
    end: dict[str, dict[str, int]] = {}
    for topic, offsets in landed.items():
        for partition, offset in offsets.items():
            since = judged.get(topic, {}).get(partition, -2)  # -2: the earliest offset Kafka still holds
            if since < offset:
                start.setdefault(topic, {})[partition] = since
                end.setdefault(topic, {})[partition] = offset
    if start:
        behind = sum(o - max(start[t][p], 0) for t, offsets in end.items() for p, o in offsets.items())
        progress(f"dead letters: the retired `dead_letters` query was {behind:,} records behind the landing; judging "
                 "them once now")
        records = (spark.read.format("kafka").option("kafka.bootstrap.servers", settings.kafka_bootstrap)
                   .option("subscribe", ",".join(start)).option("startingOffsets", json.dumps(start))
                   .option("endingOffsets", json.dumps(end)).option("failOnDataLoss", "false").load())
        rows = contract_rows(records, settings, rejections_only=True).where(F.col("dead_letter").isNotNull())
        dead_letters(rows.select("dead_letter").toArrow().column("dead_letter").to_pylist(), 0,
                     namespace=f"retired-{hashlib.sha1(json.dumps(end, sort_keys=True).encode()).hexdigest()[:12]}")
    retired = folder.with_name("dead_letters.retired")
    shutil.rmtree(retired, ignore_errors=True)
    folder.rename(retired)
    progress(f"checkpoint dead_letters: retired to {retired} (the landing query sends the dead letters now)")
