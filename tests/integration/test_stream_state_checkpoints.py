"""The stream's checkpoints under Spark itself (a file source and ``foreachBatch``; no other service).

* The de-duplication state's settings (``common.spark.STATE_STORE_CONF``) on an existing checkpoint: one written
  with Spark's former defaults (a full RocksDB snapshot at every commit, rows counted) keeps working with the
  stream's settings (changelog checkpointing, rows not counted), and the other way round — the hot query's
  de-duplication (either way of ``stream.dedup``) still drops every ``(tenant, event_id)`` it kept before the
  switch, through restarts.
* A first start cut short (``stream.checkpoints``): Spark refuses batch 0 on its leftovers; cleared, it starts.
* Checkpoint files written straight (``stream.checkpoints.DIRECT_FILE_MANAGER``): no ``.crc`` files, the state's
  snapshots saved, and a restart restores the state from them.
* The stream's own de-duplication (``stream.dedup``, ``buckets``) against Spark's ``dropDuplicatesWithinWatermark``
  as the ground truth, on the same micro-batches: the same events kept and the same ones counted late, batch by
  batch, through keys that expire and come back; and a checkpoint tells which way it was started with.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark import SparkContext

from common.settings import Settings
from common.spark import STATE_STORE_CONF
from stream.checkpoints import DIRECT_FILE_MANAGER, FILE_MANAGER_KEY, clear_unstarted, write_checkpoints_directly
from stream.dedup import checkpoint_dedup, drop_duplicates
from tests.integration.stream_spark import stream_spark_session

pytestmark = pytest.mark.integration

FORMER = {"spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "false",
          "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows": "true"}
# (tenant, event_id) of each micro-batch: repeats inside a batch, of the batch before, of a batch two back, and
# the same event_id under another tenant (a distinct event).
BATCHES = [
    [("a", f"e{i}") for i in range(0, 300)] + [("a", "e1"), ("a", "e2")],
    [("a", f"e{i}") for i in range(200, 500)] + [("b", "e1")],
    [("a", f"e{i}") for i in range(450, 700)] + [("a", "e3"), ("b", "e1")],
    [("a", f"e{i}") for i in range(650, 900)] + [("a", "e250"), ("b", "e2")],
]


def write_batch(folder: Path, index: int, keys: list[tuple[str, str]], at: datetime) -> None:
    pq.write_table(pa.table({"tenant": [t for t, _ in keys], "event_id": [e for _, e in keys],
                             "timestamp": pa.array([at] * len(keys), pa.timestamp("us", "UTC"))}),
                   folder / f"batch-{index}.parquet")


@pytest.fixture(scope="module")
def spark(settings: Settings) -> Iterator[object]:
    # State snapshots every other version, saved within a second (Spark's defaults: 10 versions, 60 s), so that a test
    # sees them written through the checkpoint file manager.
    snapshots = settings.model_copy(update={"spark_conf": "spark.sql.streaming.stateStore.maintenanceInterval=1s;"
                                                          "spark.sql.streaming.stateStore.minDeltasForSnapshot=2"})
    if SparkContext._active_spark_context is not None:  # an earlier module's (or Dagster's) session
        SparkContext._active_spark_context.stop()
    session = stream_spark_session(snapshots, "test-stream-state-checkpoints")
    yield session
    session.stop()


def deduplicate(spark, source: Path, checkpoint: Path, kept: list[tuple[str, str]], way: str = "spark"):
    """The hot query's de-duplication over Parquet files, one file per micro-batch, run until they are read (a
    running query)."""
    events = drop_duplicates(spark.readStream.schema("tenant string, event_id string, timestamp timestamp")
                             .option("maxFilesPerTrigger", 1).parquet(str(source))
                             .withWatermark("timestamp", "10 minutes"), 10, way)
    return (events.writeStream.option("checkpointLocation", str(checkpoint)).trigger(availableNow=True)
            .foreachBatch(lambda batch, _: kept.extend(
                (r["tenant"], r["event_id"]) for r in batch.select("tenant", "event_id").collect()))
            .start())


@pytest.mark.parametrize("way", ["spark", "buckets"])
def test_a_checkpoint_keeps_its_duplicates_dropped_across_state_store_settings(spark, tmp_path: Path,
                                                                               way: str) -> None:
    source, checkpoint = tmp_path / "source", tmp_path / "checkpoint"
    source.mkdir()
    kept: list[tuple[str, str]] = []
    now = datetime.now(UTC) - timedelta(minutes=1)
    try:
        # Batch 0 with the former settings, then the stream's, restarted, then the former ones again.
        for index, conf in enumerate([FORMER, STATE_STORE_CONF, STATE_STORE_CONF, FORMER]):
            for key, value in conf.items():
                spark.conf.set(key, value)
            write_batch(source, index, BATCHES[index], now)
            query = deduplicate(spark, source, checkpoint, kept, way)
            query.awaitTermination(120)
            assert query.exception() is None
            if index == 1:
                changelogs = list((checkpoint / "state").rglob("*.changelog"))
                assert changelogs, "the stream's settings write RocksDB changelogs"
    finally:
        for key, value in STATE_STORE_CONF.items():
            spark.conf.set(key, value)

    truth = {key for batch in BATCHES for key in batch}  # each distinct (tenant, event_id), whatever its batch
    assert len(kept) == len(set(kept)), "an event was kept twice"
    assert set(kept) == truth


def test_a_first_start_cut_short_is_cleared_and_the_query_starts(spark, tmp_path: Path) -> None:
    source, checkpoint = tmp_path / "source", tmp_path / "checkpoint"
    source.mkdir()
    write_batch(source, 0, BATCHES[0], datetime.now(UTC) - timedelta(minutes=1))
    # What a job killed while writing its first offset entry leaves: the entry's temporary file, and a state folder.
    for name in ("offsets/.0.5f1c-77aa.tmp", "state/0/_metadata/metadata"):
        (checkpoint / name).parent.mkdir(parents=True, exist_ok=True)
        (checkpoint / name).write_text("{}")
    kept: list[tuple[str, str]] = []
    refused = deduplicate(spark, source, checkpoint, kept)
    with pytest.raises(Exception, match="STATE_STORE_CHECKPOINT_LOCATION_NOT_EMPTY"):  # Spark refuses batch 0 as is
        refused.awaitTermination(120)
    assert kept == []

    assert clear_unstarted(str(checkpoint)) == ["offsets/.0.5f1c-77aa.tmp", "state/0/_metadata/metadata"]
    query = deduplicate(spark, source, checkpoint, kept)
    query.awaitTermination(120)
    assert query.exception() is None
    assert sorted(kept) == sorted(set(BATCHES[0]))
    assert clear_unstarted(str(checkpoint)) == [], "a started checkpoint is left alone"


# (tenant, event_id, minutes after T0) per micro-batch, the watermark 10 minutes behind the newest event time: a
# repeat inside a batch and of the batch before; an event 30 minutes on that moves the watermark to T0 + 20 min, so
# that the keys of T0 expire (their event time + 10 min is behind it) and come back as new, an event behind the
# watermark (late: dropped and counted); the same event_id under another tenant; repeats of a key that came back.
EXPIRY_BATCHES = [
    [("a", "e1", 0), ("a", "e2", 0), ("a", "e1", 0), ("b", "e1", 1), ("a", "e3", 1)],
    [("a", "e1", 2), ("a", "e4", 3), ("a", "e9", 30)],
    [("a", "e2", 25), ("a", "e5", 5), ("a", "e3", 21), ("b", "e2", 22), ("a", "e6", 20)],
    [("a", "e2", 26), ("a", "e3", 27), ("b", "e2", 22), ("a", "e7", 31), ("a", "e8", 12)],
    [("a", "e7", 45), ("a", "e10", 60)],
    [("a", "e9", 61), ("a", "e7", 62), ("a", "e6", 50)],
]


# A backlog of a quiet night: 2,000 keys over 200 minutes in one batch (about two a bucket, at different minutes),
# then an event 200 minutes on, so the next batch's watermark passes most of them and each bucket has several timers
# due at once; then the keys of the first 150 minutes come back with a new time (forgotten: kept again) with repeats
# of the last ones at their own time (still remembered: dropped), as Spark's own operator does.
BACKLOG_BATCHES = [
    [("a", f"k{i}", i // 10) for i in range(2000)],
    [("a", "jump", 400)],
    [("a", f"k{i}", 395) for i in range(0, 1500, 7)] + [("a", f"k{i}", i // 10) for i in range(1950, 2000, 3)],
]


def dedup_run(spark, source: Path, checkpoint: Path, way: str,
              batches: list[list[tuple]] = EXPIRY_BATCHES) -> tuple[list[list[tuple]], list[int]]:
    """``batches`` through one way: the events kept and the events counted late, per batch with input."""
    t0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
    source.mkdir()
    for index, batch in enumerate(batches):
        pq.write_table(pa.table({
            "tenant": [t for t, _, _ in batch], "event_id": [e for _, e, _ in batch],
            "timestamp": pa.array([t0 + timedelta(minutes=m) for _, _, m in batch], pa.timestamp("us", "UTC"))}),
            source / f"batch-{index}.parquet")
        os.utime(source / f"batch-{index}.parquet", (t0.timestamp() + index, t0.timestamp() + index))  # read in order
    kept: dict[int, list[tuple]] = {}
    events = (spark.readStream.schema("tenant string, event_id string, timestamp timestamp")
              .option("maxFilesPerTrigger", 1).parquet(str(source)).withWatermark("timestamp", "10 minutes"))
    query = (drop_duplicates(events, 10, way).writeStream.option("checkpointLocation", str(checkpoint))
             .trigger(availableNow=True)
             .foreachBatch(lambda batch, batch_id: kept.__setitem__(batch_id, sorted(
                 (r["tenant"], r["event_id"], int((r["timestamp"].replace(tzinfo=UTC) - t0).total_seconds() // 60))
                 for r in batch.collect())))
             .start())
    query.awaitTermination(180)
    assert query.exception() is None
    with_input = [p for p in query.recentProgress if p["numInputRows"]]
    late = [sum(op["numRowsDroppedByWatermark"] for op in p["stateOperators"]) for p in with_input]
    return [kept.get(p["batchId"], []) for p in with_input], late


def test_the_streams_dedup_keeps_and_drops_what_sparks_own_does(spark, tmp_path: Path) -> None:
    truth_kept, truth_late = dedup_run(spark, tmp_path / "spark-source", tmp_path / "spark", "spark")
    kept, late = dedup_run(spark, tmp_path / "buckets-source", tmp_path / "buckets", "buckets")
    assert len(truth_kept) == len(EXPIRY_BATCHES)
    assert sum(truth_late) >= 1 and any(("a", "e2", 26) in batch for batch in truth_kept), \
        "the batches exercise late events and an expired key coming back"
    assert kept == truth_kept
    assert late == truth_late
    assert checkpoint_dedup(str(tmp_path / "buckets")) == "buckets"
    assert checkpoint_dedup(str(tmp_path / "spark")) == "spark"
    assert checkpoint_dedup(str(tmp_path / "nothing-yet")) is None


def test_a_backlog_of_hours_is_forgotten_as_sparks_own_forgets(spark, tmp_path: Path) -> None:
    truth_kept, truth_late = dedup_run(spark, tmp_path / "spark-source", tmp_path / "spark", "spark", BACKLOG_BATCHES)
    kept, late = dedup_run(spark, tmp_path / "buckets-source", tmp_path / "buckets", "buckets", BACKLOG_BATCHES)
    came_back = [k for k in truth_kept[2] if k[2] == 395]
    assert len(came_back) == len(range(0, 1500, 7)) and len(truth_kept[2]) == len(came_back), \
        "the forgotten keys come back, the remembered ones are dropped"
    assert kept == truth_kept
    assert late == truth_late


def test_checkpoint_files_written_directly_keep_the_states_snapshots(spark, tmp_path: Path) -> None:
    source, checkpoint = tmp_path / "source", tmp_path / "checkpoint"
    source.mkdir()
    kept: list[tuple[str, str]] = []
    now = datetime.now(UTC) - timedelta(minutes=1)
    assert write_checkpoints_directly(spark) == DIRECT_FILE_MANAGER
    try:
        for index, batch in enumerate(BATCHES[:3]):  # one query, three micro-batches: state versions 1-3
            write_batch(source, index, batch, now)
        query = deduplicate(spark, source, checkpoint, kept, "buckets")
        query.awaitTermination(120)
        assert query.exception() is None
        deadline = time.monotonic() + 30
        while not list((checkpoint / "state").rglob("*.zip")) and time.monotonic() < deadline:
            query = deduplicate(spark, source, checkpoint, kept, "buckets")  # a run loads the state; maintenance saves
            query.awaitTermination(120)
            time.sleep(1)
        assert list((checkpoint / "state").rglob("*.zip")), "the state's snapshots are saved"
        write_batch(source, 3, BATCHES[3], now)
        query = deduplicate(spark, source, checkpoint, kept, "buckets")  # restored from a snapshot and changelogs
        query.awaitTermination(120)
        assert query.exception() is None
    finally:
        spark.conf.unset(FILE_MANAGER_KEY)

    # Every micro-batch's files (offset and commit log entries, the state's changelogs and snapshot zips) are written
    # straight; the snapshots' SST files, copied in the background by RocksDB's own file manager, keep theirs.
    checksummed = [p.relative_to(checkpoint) for p in checkpoint.rglob("*.crc") if p.parent.name != "SSTs"]
    assert not checksummed, f"checksum files beside a micro-batch's checkpoint files: {checksummed}"
    assert list((checkpoint / "offsets").glob("[0-9]*")) and list((checkpoint / "commits").glob("[0-9]*"))
    assert len(kept) == len(set(kept)), "an event was kept twice"
    assert set(kept) == {key for batch in BATCHES for key in batch}
