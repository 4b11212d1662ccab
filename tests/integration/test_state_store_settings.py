"""The de-duplication state's settings (``common.spark.STATE_STORE_CONF``) on an existing checkpoint.

A checkpoint written with Spark's former defaults (a full RocksDB snapshot at every commit, rows counted) must
keep working with the stream's settings (changelog checkpointing, rows not counted), and the other way round:
the hot query's ``dropDuplicatesWithinWatermark`` must still drop every ``(tenant, event_id)`` it kept before
the switch. Only Spark runs here (a file source and ``foreachBatch``), no other service.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.settings import Settings
from common.spark import STATE_STORE_CONF, spark_session

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


def test_a_checkpoint_keeps_its_duplicates_dropped_across_state_store_settings(settings: Settings,
                                                                               tmp_path: Path) -> None:
    source, checkpoint = tmp_path / "source", tmp_path / "checkpoint"
    source.mkdir()
    spark = spark_session(settings, "test-state-store-settings")
    kept: list[tuple[str, str]] = []
    try:
        def run(conf: dict[str, str]) -> None:
            for key, value in conf.items():
                spark.conf.set(key, value)
            events = (spark.readStream.schema("tenant string, event_id string, timestamp timestamp")
                      .option("maxFilesPerTrigger", 1).parquet(str(source))
                      .withWatermark("timestamp", "10 minutes").dropDuplicatesWithinWatermark(["tenant", "event_id"]))
            query = (events.writeStream.option("checkpointLocation", str(checkpoint)).trigger(availableNow=True)
                     .foreachBatch(lambda batch, _: kept.extend(
                         (r["tenant"], r["event_id"]) for r in batch.select("tenant", "event_id").collect()))
                     .start())
            query.awaitTermination(120)
            assert query.exception() is None

        now = datetime.now(UTC) - timedelta(minutes=1)
        # Batch 0 with the former settings, then the stream's, restarted, then the former ones again.
        for index, conf in enumerate([FORMER, STATE_STORE_CONF, STATE_STORE_CONF, FORMER]):
            write_batch(source, index, BATCHES[index], now)
            run(conf)
            if index == 1:
                changelogs = list((checkpoint / "state").rglob("*.changelog"))
                assert changelogs, "the stream's settings write RocksDB changelogs"
    finally:
        spark.stop()

    truth = {key for batch in BATCHES for key in batch}  # each distinct (tenant, event_id), whatever its batch
    assert len(kept) == len(set(kept)), "an event was kept twice"
    assert set(kept) == truth
