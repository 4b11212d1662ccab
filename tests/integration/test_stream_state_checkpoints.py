"""The stream's checkpoints under Spark itself (a file source and ``foreachBatch``; no other service).

* The de-duplication state's settings (``common.spark.STATE_STORE_CONF``) on an existing checkpoint: one written
  with Spark's former defaults (a full RocksDB snapshot at every commit, rows counted) keeps working with the
  stream's settings (changelog checkpointing, rows not counted), and the other way round — the hot query's
  ``dropDuplicatesWithinWatermark`` still drops every ``(tenant, event_id)`` it kept before the switch.
* A first start cut short (``stream.checkpoints``): Spark refuses batch 0 on its leftovers; cleared, it starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.settings import Settings
from common.spark import STATE_STORE_CONF, spark_session
from stream.checkpoints import clear_unstarted

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
    session = spark_session(settings, "test-stream-state-checkpoints")
    yield session
    session.stop()


def deduplicate(spark, source: Path, checkpoint: Path, kept: list[tuple[str, str]]):  # -> a running query
    """The hot query's de-duplication over Parquet files, one file per micro-batch, run until they are read."""
    events = (spark.readStream.schema("tenant string, event_id string, timestamp timestamp")
              .option("maxFilesPerTrigger", 1).parquet(str(source))
              .withWatermark("timestamp", "10 minutes").dropDuplicatesWithinWatermark(["tenant", "event_id"]))
    return (events.writeStream.option("checkpointLocation", str(checkpoint)).trigger(availableNow=True)
            .foreachBatch(lambda batch, _: kept.extend(
                (r["tenant"], r["event_id"]) for r in batch.select("tenant", "event_id").collect()))
            .start())


def test_a_checkpoint_keeps_its_duplicates_dropped_across_state_store_settings(spark, tmp_path: Path) -> None:
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
            query = deduplicate(spark, source, checkpoint, kept)
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
