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
when the state costs nothing), ``rocksdb`` (Spark's ``dropDuplicatesWithinWatermark``), RocksDB with
``trackTotalNumberOfRows=false``, with changelog checkpointing, the HDFS-backed (in-memory) provider, and
``buckets`` (the stream's own operator, ``stream.dedup``, with the stream's RocksDB settings).
Each way checks that it kept exactly the distinct events.

Usage: ``python -m bench.stream_dedup [--events 400000] [--batches 4] [--repeats 2] [--ways a,b]``; figures
are printed and written to ``bench/results/stream_dedup.json``.

``--fixed-cost`` measures instead what one small micro-batch costs (freshness at a paced rate is made of them):
a query per way whose state is first filled with ``--prefill`` keys spread over the 20 minutes a key stays in the
state (event time + the 10-minute delay, evicted once the watermark passes it), then fed micro-batches of each of
``--sizes`` events in turn, ``--rounds`` times, their event times advancing as at 5,000 events/s so that every batch
evicts the keys that expire. Each batch goes through a Python worker and back (an identity ``mapInArrow``, the
contract's round trip without its work) before the watermark and the state, and is collected as Arrow as the hot
sink does. Per batch: the Spark JVM's CPU time (all threads, ``/proc``) from the file's arrival to the batch's end,
and Spark's own split (the whole trigger, ``addBatch``, planning, WAL + commit log, the state's updates / removals /
commit); medians per way and size in ``bench/results/stream_dedup-fixed-cost[-<label>].json``. Session-wide
settings (``LAKEHOUSE_SPARK_CONF``) are compared by running the command once per setting, alternately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from bench.stream_contract import MAX_AGE, MAX_FUTURE, kafka_batch
from common.events import EVENT_ARROW_SCHEMA
from common.spark import STATE_STORE_CONF
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
    "buckets": dict(STATE_STORE_CONF),  # the stream's own operator (stream.dedup), with the stream's settings
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


def run_way(spark, source: str, checkpoint: str, conf: dict[str, str], way: str) -> dict:
    from stream.dedup import drop_duplicates
    from stream.records import valid_events

    defaults = {"spark.sql.streaming.stateStore.providerClass": ROCKSDB,
                ROCKSDB_CONF + "trackTotalNumberOfRows": "true",
                ROCKSDB_CONF + "changelogCheckpointing.enabled": "false"}
    for key, value in (defaults | conf).items():
        spark.conf.set(key, value)
    from stream.contract import CONTRACT_DDL

    events = valid_events(spark.readStream.schema(CONTRACT_DDL).option("maxFilesPerTrigger", 1).parquet(source))
    events = events.withWatermark("timestamp", "10 minutes")
    if way == "shuffle_only":
        events = events.repartition(int(spark.conf.get("spark.sql.shuffle.partitions")), "tenant", "event_id")
    else:
        events = drop_duplicates(events, 10, "buckets" if way == "buckets" else "spark")
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


RATE = 5000  # events/s: how fast the fixed-cost batches' event time advances
KEY_LIFETIME = timedelta(minutes=20)  # event time + delay, until the watermark (newest event - delay) passes it
FIXED_COST_WAYS: dict[str, dict[str, str]] = {
    "rocksdb": {},  # Spark's dropDuplicatesWithinWatermark (common.spark.STATE_STORE_CONF)
    "buckets": {},  # the stream's own operator (stream.dedup): buckets of keys that forget once a minute
    "rocksdb_uncompressed": {ROCKSDB_CONF + "compression": "none"},
    "rocksdb_uncompressed_cached": {ROCKSDB_CONF + "compression": "none", ROCKSDB_CONF + "blockCacheSizeMB": "256"},
    "no_state": {},  # a repartition on the key in the state's place: what a batch costs without it
    "rocksdb_projected": {},  # the sink's columns chosen in the query's plan, collected as they come (no select)
}


def contract_rows_at(n: int, start: datetime, end: datetime, tag: str) -> pa.Table:
    """``n`` distinct valid contract rows (typed instants) with event times spread evenly over [start, end)."""
    from stream.contract import TYPED_CONTRACT_ARROW_SCHEMA

    step = (end - start) / max(n, 1)
    times = pa.array([start + step * i for i in range(n)], pa.timestamp("us", "UTC"))
    columns = {"tenant": pa.array([f"tenant-{i % 5}" for i in range(n)]), "event": pa.array(["page_view"] * n),
               "timestamp": times, "received_at": times,
               "event_id": pa.array([f"{tag}-{i:09d}-0123456789abcdef0123" for i in range(n)]),
               "revenue": pa.nulls(n, pa.float64()), "properties": pa.array(["{}"] * n),
               "kafka_partition": pa.array([i % 4 for i in range(n)], pa.int32()),
               "kafka_offset": pa.array(range(n), pa.int64()), "kafka_index": pa.array([0] * n, pa.int32()),
               "dead_letter": pa.nulls(n, pa.string())}
    for name in ("user_id", "page", "country", "device"):
        columns[name] = pa.array([f"{name}-{i % 97}" for i in range(n)])
    return pa.table([columns[f.name] for f in TYPED_CONTRACT_ARROW_SCHEMA], schema=TYPED_CONTRACT_ARROW_SCHEMA)


def _identity(batches):  # the Python worker's round trip, without the contract's work
    yield from batches


def fixed_cost_way(spark, work: str, way: str, prefill: int, sizes: list[int], rounds: int) -> dict:
    """One way's query: the state filled with ``prefill`` keys, then ``rounds`` × ``sizes`` micro-batches, one file
    each; per batch the JVM's CPU time and Spark's split. Returns the medians per size (the first round left out)."""
    from stream.contract import TYPED_CONTRACT_DDL
    from stream.dedup import drop_duplicates
    from stream.records import valid_events

    source, checkpoint = os.path.join(work, f"source-{way}"), os.path.join(work, f"checkpoint-{way}")
    os.makedirs(source)
    for key, value in FIXED_COST_WAYS[way].items():
        spark.conf.set(key, value)
    events = valid_events(spark.readStream.schema(TYPED_CONTRACT_DDL).option("maxFilesPerTrigger", 1).parquet(source))
    events = events.mapInArrow(_identity, events.schema).withWatermark("timestamp", "10 minutes")
    if way == "no_state":
        events = events.repartition(2, "tenant", "event_id")
    else:
        events = drop_duplicates(events, 10, "buckets" if way == "buckets" else "spark")
    projected = way.endswith("_projected")
    if projected:
        events = events.select(*EVENT_ARROW_SCHEMA.names)
    kept: list[int] = []

    def collect(batch, batch_id: int) -> None:
        if batch_id == 0:
            kept.append(batch.count())
        else:
            kept.append((batch if projected else batch.select(*EVENT_ARROW_SCHEMA.names)).toArrow().num_rows)

    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def arrive(index: int, table: pa.Table) -> None:  # atomically, as a whole file
        pq.write_table(table, os.path.join(work, "incoming.parquet"))
        os.rename(os.path.join(work, "incoming.parquet"), os.path.join(source, f"batch-{index:05d}.parquet"))

    arrive(0, contract_rows_at(prefill, now - KEY_LIFETIME, now, f"{way}-p"))
    query = (events.writeStream.foreachBatch(collect).option("checkpointLocation", checkpoint)
             .trigger(processingTime="100 milliseconds").start())
    jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    per_size: dict[int, list[dict]] = {n: [] for n in sizes}
    try:
        query.processAllAvailable()
        clock, index = now, 0
        for round_ in range(rounds):
            for n in sizes:
                index += 1
                table = contract_rows_at(n, clock, clock + timedelta(seconds=n / RATE), f"{way}-{index}")
                clock += timedelta(seconds=n / RATE)
                time.sleep(0.3)  # the previous batch's listener and background work settle
                cpu = process_cpu_s(jvm)
                arrive(index, table)
                query.processAllAvailable()
                jvm_cpu_ms = (process_cpu_s(jvm) - cpu) * 1000
                progress = next(p for p in reversed(query.recentProgress) if p["numInputRows"] == n)
                d, ops = progress["durationMs"], progress.get("stateOperators", [])
                figures = {"jvm_cpu_ms": round(jvm_cpu_ms), "trigger_ms": d.get("triggerExecution", 0),
                           "add_batch_ms": d.get("addBatch", 0),
                           "offsets_planning_ms": d.get("latestOffset", 0) + d.get("queryPlanning", 0),
                           "wal_commit_ms": d.get("walCommit", 0) + d.get("commitOffsets", 0),
                           "state_updates_ms": sum(o.get("allUpdatesTimeMs", 0) for o in ops),
                           "state_removals_ms": sum(o.get("allRemovalsTimeMs", 0) for o in ops),
                           "state_commit_ms": sum(o.get("commitTimeMs", 0) for o in ops),
                           "state_rows_removed": sum(o.get("numRowsRemoved", 0) for o in ops)}
                if round_:
                    per_size[n].append(figures)
    finally:
        query.stop()
    expected = prefill + rounds * sum(sizes)
    if sum(kept) != expected:
        raise SystemExit(f"{way} kept {sum(kept):,} events, expected {expected:,}")
    return {str(n): {key: statistics.median(f[key] for f in figures) for key in figures[0]} | {"batches": len(figures)}
            for n, figures in per_size.items()}


def fixed_cost(args: argparse.Namespace) -> None:
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    unknown = set(ways) - set(FIXED_COST_WAYS)
    if unknown:
        raise SystemExit(f"unknown ways {sorted(unknown)}; known with --fixed-cost: {', '.join(FIXED_COST_WAYS)}")
    sizes = [int(n) for n in args.sizes.split(",")]
    from common.settings import Settings
    from common.spark import spark_session

    work = tempfile.mkdtemp(prefix="bench-stream-fixed-cost-")
    load_before = os.getloadavg()
    results: dict[str, list[dict]] = {way: [] for way in ways}
    from stack.stream_operators import build_stream_operators

    spark = spark_session(Settings(), "bench-stream-fixed-cost", [str(build_stream_operators(Settings()))])
    baseline = {key: spark.conf.get(key, None) for conf in FIXED_COST_WAYS.values() for key in conf}
    try:
        for repeat in range(args.repeats):  # the ways alternately, so that the machine's load weighs on each alike
            for way in ways:
                for key, value in baseline.items():  # back to the session's own settings between ways
                    if value is None:
                        spark.conf.unset(key)
                    else:
                        spark.conf.set(key, value)
                figures = fixed_cost_way(spark, os.path.join(work, f"{repeat}"), way, args.prefill, sizes, args.rounds)
                figures["load_average"] = round(os.getloadavg()[0], 2)
                print(way, repeat, json.dumps(figures), flush=True)
                results[way].append(figures)
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    result = {"benchmark": "stream_dedup --fixed-cost", "when": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "spark_conf": Settings().spark_conf, "prefill_keys": args.prefill, "sizes": sizes, "rounds": args.rounds,
              "ways": {way: {size: {key: statistics.median(r[size][key] for r in runs) for key in runs[0][size]}
                             for size in map(str, sizes)} for way, runs in results.items()},
              "runs": results, "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]}
    print(json.dumps(result["ways"], indent=2))
    target = RESULTS.replace(".json", f"-fixed-cost{'-' + args.label if args.label else ''}.json")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w") as out:
        out.write(json.dumps(result, indent=2) + "\n")
    print(f"== written to {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=400_000, help="events per micro-batch")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--shuffle-partitions", type=int, default=2)
    parser.add_argument("--fixed-cost", action="store_true", help="what one small micro-batch costs (see above)")
    parser.add_argument("--prefill", type=int, default=300_000, help="--fixed-cost: keys in the state before")
    parser.add_argument("--sizes", default="100,1000,10000", help="--fixed-cost: events per micro-batch")
    parser.add_argument("--rounds", type=int, default=4, help="--fixed-cost: batches of each size (the first not kept)")
    parser.add_argument("--label", default="", help="--fixed-cost: appended to the results file's name")
    args = parser.parse_args()
    if args.fixed_cost:
        if args.ways == ",".join(WAYS):
            args.ways = "rocksdb,no_state"
        fixed_cost(args)
        return
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    unknown = set(ways) - set(WAYS)
    if unknown:
        parser.error(f"unknown ways {sorted(unknown)}; known: {', '.join(WAYS)}")

    from common.settings import Settings
    from common.spark import spark_session
    from stack.stream_operators import build_stream_operators

    work = tempfile.mkdtemp(prefix="bench-stream-dedup-")
    load_before = os.getloadavg()
    try:
        source = os.path.join(work, "source")
        os.makedirs(source)
        distinct = write_batches(source, args.events, args.batches)
        spark = spark_session(Settings(), "bench-stream-dedup", [str(build_stream_operators(Settings()))])
        spark.conf.set("spark.sql.shuffle.partitions", str(args.shuffle_partitions))
        runs: dict[str, list[dict]] = {way: [] for way in ways}
        try:
            for repeat in range(-1, args.repeats):  # round -1: Spark's and the JIT's warm-up, not kept
                for way in ways if repeat >= 0 else ways[:1]:
                    checkpoint = os.path.join(work, f"checkpoint-{way}-{repeat}")
                    started = time.perf_counter()
                    figures = run_way(spark, source, checkpoint, WAYS[way], way)
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
