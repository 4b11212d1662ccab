"""The ``landing`` query's dead letters: none lost when a micro-batch is replayed, or when a stream is upgraded.

A replayed micro-batch that had already landed writes no file again and still sends its dead letters (at least
once). Upgrading a stream of three queries (``hot``, ``landing``, ``dead_letters``) to the two of today: the retired
``dead_letters`` query kept its own checkpoint. When it stopped behind the landing, the records between the two are
judged once at the first start of the new version (``stream.landing.retire_dead_letter_query``) and their dead
letters sent, read here back from the dead-letter topic; records either query had judged before are not sent again,
and the old checkpoint is set aside so the catch-up happens once. Real Kafka, Spark and hot node; the checkpoints
are written as Spark writes them (``v1``, the batch's metadata, the source's offsets).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from pyspark.sql import SparkSession

from common.hot_store import HotStore
from common.lake import committed_files, landing_path
from common.settings import Settings
from stack.maven import spark_jars
from stream.job import STREAM_PROGRESS
from stream.landing import (
    DeadLetters,
    DeadLetterWriter,
    LandingWriter,
    forget_retired_progress,
    retire_dead_letter_query,
)
from stream.records import contract_rows
from tests.integration.stream_spark import stream_spark_session

pytestmark = pytest.mark.integration

#: The records of the test's topic (one partition), by offset; ``VALID`` is an event the contract accepts.
VALID = b'{"event": "ok", "timestamp": "NOW", "user_id": 1}'
RECORDS = [VALID, b"not json", b"{}", b"[1, 2]", VALID, b"\xff\xfe", b"nope", b'{"event": "ok"}']
JUDGED_BY_OLD_QUERY = 2  # offsets 0 and 1: the retired query sent those dead letters
LANDED = 6  # offsets 0..5: the landing query read those; offsets 6, 7 are the new landing query's to judge


@pytest.fixture(scope="module")
def spark(stack, settings: Settings) -> Iterator[SparkSession]:
    session = stream_spark_session(settings, "test-stream-upgrade", [str(p) for p in spark_jars(settings, print)])
    yield session
    session.stop()


def _checkpoint(folder: Path, batch: int, topic: str, offset: int) -> None:
    """A query checkpoint whose last committed micro-batch ends at ``offset`` of partition 0 of ``topic``."""
    (folder / "offsets").mkdir(parents=True)
    (folder / "commits").mkdir()
    metadata = {"batchWatermarkMs": 0, "batchTimestampMs": 0, "conf": {}}
    (folder / "offsets" / str(batch)).write_text(f"v1\n{json.dumps(metadata)}\n{json.dumps({topic: {'0': offset}})}")
    (folder / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}')


def _letters_of(settings: Settings, topic: str) -> list[dict]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=3000)
    try:
        partitions = [TopicPartition(settings.kafka_dlq_topic, p)
                      for p in consumer.partitions_for_topic(settings.kafka_dlq_topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        return [letter for m in consumer if (letter := json.loads(m.value)).get("topic") == topic]
    finally:
        consumer.close()


def test_the_records_the_retired_query_had_not_judged_are_dead_lettered_once(
        spark: SparkSession, settings: Settings, hot: HotStore, tmp_path: Path) -> None:
    topic = f"upgrade-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()
    for record in RECORDS:
        producer.send(topic, value=record.replace(b"NOW", now), partition=0).get(timeout=30)
    producer.close()

    checkpoints = tmp_path / "checkpoints"
    _checkpoint(checkpoints / "dead_letters", 41, topic, JUDGED_BY_OLD_QUERY)
    _checkpoint(checkpoints / "landing", 7, topic, LANDED)
    lines: list[str] = []
    writer = DeadLetterWriter(settings, hot, f"test-{topic}", lines.append)
    hot.insert_arrow("stream_progress", pa.table(  # a row the retired query's progress listener wrote
        {"query_name": ["dead_letters"], "batch_id": [41], "finished_at": [datetime.now(UTC)], "input_rows": [2],
         "late_rows": [0], "duration_ms": [90], "watermark": [None], "end_offsets": [""]}, schema=STREAM_PROGRESS))
    retire_dead_letter_query(spark, settings, str(checkpoints), writer, lines.append)
    forget_retired_progress(hot, lines.append)

    # Offsets 2..5 were landed but never judged for dead letters: the invalid ones among them are sent now.
    letters = _letters_of(settings, topic)
    assert {d["offset"] for d in letters} == {2, 3, 5}
    assert all(d["source"] == "stream" and d["partition"] == 0 and d["reason"] for d in letters)
    assert not (checkpoints / "dead_letters").exists()
    assert (checkpoints / "dead_letters.retired" / "commits" / "41").exists()
    assert any("4 records behind the landing" in line for line in lines), lines
    assert hot.query_arrow("SELECT count() AS n FROM stream_progress WHERE query_name = 'dead_letters'"
                           ).to_pylist() == [{"n": 0}], "GET /metrics shows no query that no longer runs"

    # Once retired, a second start judges nothing again.
    retire_dead_letter_query(spark, settings, str(checkpoints), writer, lines.append)
    assert len(_letters_of(settings, topic)) == len(letters)


def test_a_replayed_batch_lands_once_and_sends_its_dead_letters_again(
        spark: SparkSession, settings: Settings, hot: HotStore, tmp_path: Path) -> None:
    topic = f"replay-{uuid.uuid4().hex[:8]}"  # only named in the records: the dead letters are told apart by it
    lake = settings.model_copy(update={"lake_uri": str(tmp_path / "lake")})
    now = datetime.now(UTC)
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()
    records = spark.createDataFrame(
        [(record.replace(b"NOW", stamp), topic, 0, offset, now) for offset, record in enumerate(RECORDS)],
        "value binary, topic string, partition int, offset long, timestamp timestamp")
    letters = spark.sparkContext.accumulator([], DeadLetters())
    lines: list[str] = []
    writer = LandingWriter(lake, DeadLetterWriter(settings, hot, f"test-{topic}", lines.append), letters)
    rows = contract_rows(records, lake, rejections_to=letters)

    writer(rows, 0)
    landed = committed_files(landing_path(lake))
    users = [user for path in landed for user in pq.read_table(path).column("user_id").to_pylist()]
    assert users == ["1", "1"]  # the two valid records, one event each
    sent = [d["offset"] for d in _letters_of(settings, topic)]
    assert set(sent) == {1, 2, 3, 5, 6, 7}  # every invalid record, none of the two valid ones (offsets 0 and 4)

    writer(rows, 0)  # Spark replays batch 0 after a crash between its landing and its dead letters
    assert committed_files(landing_path(lake)) == landed
    assert sorted(d["offset"] for d in _letters_of(settings, topic)) == sorted(sent * 2)
