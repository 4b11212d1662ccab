"""Benchmark: the hot query's de-duplication state, one way against another, side by side in one Spark session.

In process (no services): the hot query's plan from the contract's output on — valid events typed, a
watermark, ``dropDuplicatesWithinWatermark(["tenant", "event_id"])``, each micro-batch collected to the
driver as Arrow (what ``HotTierWriter`` does before the rollup) — fed from Parquet files of contract rows
(``--batches`` files of ``--events`` API-shaped events, one file per micro-batch, a share of the ids of each
batch repeated from the one before: the duplicates the state must drop), so the Kafka read and the contract,
measured by ``bench.stream_contract``, are left out. Every way runs as a streaming query of its own with a
fresh checkpoint, the ways alternately ``--repeats`` times after one warm-up run. Per run: the Spark JVM's CPU
time (``/proc``, all its threads, RocksDB's included: the steadier figure on a shared machine), the wall time of
the micro-batches after the first (Spark's warm-up) with Spark's own split of them (``addBatch``, the state's
updates / removals / commit) and the state's memory; per way the best of each, and its ratio to ``rocksdb``.

Ways: ``shuffle_only`` (the same plan with the state replaced by a repartition on the key: what is left
when the state costs nothing), ``rocksdb`` (as the stream runs), RocksDB with
``trackTotalNumberOfRows=false``, with changelog checkpointing, and the HDFS-backed (in-memory) provider.
Each way checks that it kept exactly the distinct events.

Usage: ``python -m bench.stream_dedup [--events 400000] [--batches 4] [--repeats 2] [--ways a,b]``; figures
are printed and written to ``bench/results/stream_dedup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from bench.stream_contract import MAX_AGE, MAX_FUTURE, kafka_batch
from common.events import EVENT_ARROW_SCHEMA
from stream.contract import CONTRACT_ARROW_SCHEMA, RecordContract

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "stream_dedup.json")
ROCKSDB = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
HDFS = "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider"
ROCKSDB_CONF = "spark.sql.streaming.stateStore.rocksdb."
WAYS: dict[str, dict[str, str]] = {
    "shuffle_only": {},
    "rocksdb": {},
    "rocksdb_untracked_rows": {ROCKSDB_CONF + "trackTotalNumberOfRows": "false"},
    "rocksdb_changelog": {ROCKSDB_CONF + "changelogCheckpointing.enabled": "true"},
    "rocksdb_untracked_changelog": {ROCKSDB_CONF + "trackTotalNumberOfRows": "false",
                                    ROCKSDB_CONF + "changelogCheckpointing.enabled": "true"},
    "hdfs": {"spark.sql.streaming.stateStore.providerClass": HDFS},
}
DUPLICATE_SHARE = 0.01  # of each batch: ids repeated from the batch before


def write_batches(folder: str, events: int, batches: int) -> int:
    """Parquet files of contract rows, one per micro-batch; returns the number of distinct events."""
    contract = RecordContract(MAX_AGE, MAX_FUTURE)
    rows = contract.apply(kafka_batch(events * batches), datetime.now(UTC))
    table = pa.Table.from_batches([rows]).cast(CONTRACT_ARROW_SCHEMA)
    dups = int(events * DUPLICATE_SHARE)
    for b in range(batches):
        part = table.slice(b * events, events)
        if b:
            part = pa.concat_tables([part, table.slice(b * events - dups, dups)])  # repeats of the batch before
        pq.write_table(part, os.path.join(folder, f"batch-{b:03d}.parquet"))
    return events * batches


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``), all its threads."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_way(spark, source: str, checkpoint: str, conf: dict[str, str], shuffle_only: bool) -> dict:
    from stream.job import valid_events

    defaults = {"spark.sql.streaming.stateStore.providerClass": ROCKSDB,
                ROCKSDB_CONF + "trackTotalNumberOfRows": "true",
                ROCKSDB_CONF + "changelogCheckpointing.enabled": "false"}
    for key, value in (defaults | conf).items():
        spark.conf.set(key, value)
    from stream.contract import CONTRACT_DDL

    events = valid_events(spark.readStream.schema(CONTRACT_DDL).option("maxFilesPerTrigger", 1).parquet(source))
    events = events.withWatermark("timestamp", "10 minutes")
    events = (events.repartition(int(spark.conf.get("spark.sql.shuffle.partitions")), "tenant", "event_id")
              if shuffle_only else events.dropDuplicatesWithinWatermark(["tenant", "event_id"]))
    kept = []

    def collect(batch, batch_id: int) -> None:
        kept.append(batch.select(*EVENT_ARROW_SCHEMA.names).toArrow().num_rows)

    jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    cpu_before = process_cpu_s(jvm)
    query = (events.writeStream.foreachBatch(collect).option("checkpointLocation", checkpoint)
             .trigger(availableNow=True).start())
    query.awaitTermination()
    jvm_cpu_s = process_cpu_s(jvm) - cpu_before
    progress = [p for p in query.recentProgress if p["numInputRows"]]
    later = progress[1:]

    def total(key: str) -> float:
        return sum(op.get(key, 0) for p in later for op in p.get("stateOperators", [])) / 1000

    return {"kept": sum(kept), "jvm_cpu_s": round(jvm_cpu_s, 2), "batches": len(progress),
            "first_batch_s": progress[0]["durationMs"]["triggerExecution"] / 1000,
            "later_batches_s": sum(p["durationMs"]["triggerExecution"] for p in later) / 1000,
            "later_add_batch_s": sum(p["durationMs"].get("addBatch", 0) for p in later) / 1000,
            "later_input_rows": sum(p["numInputRows"] for p in later),
            "later_state_updates_s": total("allUpdatesTimeMs"), "later_state_removals_s": total("allRemovalsTimeMs"),
            "later_state_commit_s": total("commitTimeMs"),
            "state_memory_mib": round(max(sum(op.get("memoryUsedBytes", 0) for op in p.get("stateOperators", []))
                                          for p in progress) / 2**20, 1)}


def summary(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Per way the best (least) JVM CPU time and wall time of its runs, and their ratios to ``rocksdb``'s: on a
    shared machine the CPU time is the steadier of the two."""
    out: dict[str, dict] = {}
    for way, figures in runs.items():
        cpu = min(f["jvm_cpu_s"] for f in figures)
        later = min(f["later_batches_s"] for f in figures)
        out[way] = {"best_jvm_cpu_s": cpu, "best_later_batches_s": later,
                    "jvm_cpu_us_per_event": round(cpu / figures[0]["kept"] * 1e6, 2),
                    "later_events_per_s": round(figures[0]["later_input_rows"] / later),
                    "state_memory_mib": max(f["state_memory_mib"] for f in figures)}
    if "rocksdb" in out:
        base = out["rocksdb"]
        for figures in out.values():
            figures["cpu_ratio_to_rocksdb"] = round(figures["best_jvm_cpu_s"] / base["best_jvm_cpu_s"], 2)
            figures["wall_ratio_to_rocksdb"] = round(figures["best_later_batches_s"] / base["best_later_batches_s"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=400_000, help="events per micro-batch")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--shuffle-partitions", type=int, default=2)
    args = parser.parse_args()
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    unknown = set(ways) - set(WAYS)
    if unknown:
        parser.error(f"unknown ways {sorted(unknown)}; known: {', '.join(WAYS)}")

    from common.settings import Settings
    from common.spark import spark_session

    work = tempfile.mkdtemp(prefix="bench-stream-dedup-")
    load_before = os.getloadavg()
    try:
        source = os.path.join(work, "source")
        os.makedirs(source)
        distinct = write_batches(source, args.events, args.batches)
        spark = spark_session(Settings(), "bench-stream-dedup")
        spark.conf.set("spark.sql.shuffle.partitions", str(args.shuffle_partitions))
        runs: dict[str, list[dict]] = {way: [] for way in ways}
        try:
            for repeat in range(-1, args.repeats):  # round -1: Spark's and the JIT's warm-up, not kept
                for way in ways if repeat >= 0 else ways[:1]:
                    checkpoint = os.path.join(work, f"checkpoint-{way}-{repeat}")
                    started = time.perf_counter()
                    figures = run_way(spark, source, checkpoint, WAYS[way], way == "shuffle_only")
                    figures["wall_s"] = round(time.perf_counter() - started, 2)
                    figures["load_average"] = round(os.getloadavg()[0], 2)
                    print(way, repeat, json.dumps(figures), flush=True)
                    expected = distinct + (args.events * DUPLICATE_SHARE * (args.batches - 1) if way == "shuffle_only"
                                           else 0)
                    if figures["kept"] != expected:
                        raise SystemExit(f"{way} kept {figures['kept']:,} events, expected {expected:,.0f}")
                    if repeat >= 0:
                        runs[way].append(figures)
        finally:
            spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"benchmark": "stream_dedup", "when": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "events_per_batch": args.events, "batches": args.batches, "duplicate_share": DUPLICATE_SHARE,
              "shuffle_partitions": args.shuffle_partitions, "ways": summary(runs), "runs": runs}
    result["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result, indent=2))
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as out:
        out.write(json.dumps(result, indent=2) + "\n")
    print(f"== written to {RESULTS}")


if __name__ == "__main__":
    main()
