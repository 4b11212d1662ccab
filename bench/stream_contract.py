"""Benchmark: the stream's event contract per event, per-event path against column-wise, side by side.

In process (no services): API-shaped records (``EVENTS_PER_MESSAGE`` normalized events each, as
``bench.freshness_throughput`` produces them) through ``RecordContract.apply`` three ways, alternately
on the same batch: every record through ``events_of_record`` (the path before the column-wise one),
column-wise, and column-wise for rejections only (the dead-letter query). CPU time, best of
``--repeats``.

``--spark`` adds the hot query's plan inside a local Spark session, a stage at a time (``in_spark``: the
records' read, their trip to the Python workers and back, the contract, typed events with Spark's casts or
with the contract's typed instants, the shuffle before the de-duplication, the Arrow collection to the
driver; and a JVM-only JSON parse for comparison), with wall and CPU time per step.

Usage: ``python -m bench.stream_contract [--events 100000] [--repeats 7] [--spark] [--label L]``; figures are
printed and written to ``bench/results/stream_contract[-L].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from bench.freshness_throughput import EventTemplates
from ingest.publisher import EVENTS_PER_MESSAGE
from stream.contract import RecordContract

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "stream_contract.json")
MAX_AGE, MAX_FUTURE = timedelta(days=1), timedelta(minutes=5)
WAYS = {"per_event": {"columnar": False}, "column_wise": {}, "column_wise_rejections_only": {"rejections_only": True}}


def kafka_batch(events: int) -> pa.RecordBatch:
    """Records as the Kafka source hands them to the contract: value, topic, partition, offset, timestamp."""
    templates = EventTemplates()
    values = []
    for _ in range(0, events, EVENTS_PER_MESSAGE):
        ids = templates.ids(EVENTS_PER_MESSAGE)
        values.append(b"[" + b",".join(templates.normalized[i % len(templates.normalized)].replace(
            b"@ID@", f"{templates.run}-k{i}".encode()) for i in ids) + b"]")
    n = len(values)
    now = datetime.now(UTC).replace(tzinfo=None)
    return pa.record_batch({"value": pa.array(values, pa.binary()), "topic": pa.array(["events"] * n),
                            "partition": pa.array([i % 2 for i in range(n)], pa.int32()),
                            "offset": pa.array(range(n), pa.int64()),
                            "timestamp": pa.array([now] * n, pa.timestamp("us"))})


def in_process(batch: pa.RecordBatch, events: int, repeats: int) -> dict[str, float]:
    contracts = {name: RecordContract(MAX_AGE, MAX_FUTURE, **kw) for name, kw in WAYS.items()}
    best = dict.fromkeys(WAYS, float("inf"))
    for _ in range(repeats):  # alternately, so that the machine's load weighs on each way alike
        for name, contract in contracts.items():
            now = datetime.now(UTC)
            started = time.process_time()
            contract.apply(batch, now)
            best[name] = min(best[name], time.process_time() - started)
    return {f"{name}_us_per_event": round(seconds / events * 1e6, 2) for name, seconds in best.items()}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and of its children it has reaped (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Spark's Python daemon and its workers below the JVM)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents.setdefault(int(stat.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except OSError:
                continue
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _cpu(jvm: int) -> tuple[float, float]:
    """CPU seconds so far of the JVM and of the Python workers below it."""
    workers = 0.0
    for pid in _descendants(jvm):
        try:
            workers += _cpu_s(pid)
        except OSError:  # a worker that ended meanwhile: its time is in its parent's reaped children
            continue
    return _cpu_s(jvm), workers


def in_spark(batch: pa.RecordBatch, events: int, repeats: int) -> dict:
    """Where a hot micro-batch's ``read+dedup`` goes before the de-duplication state, step by step.

    Each step is the previous one plus one stage of the hot query's plan, run to Spark's ``noop`` sink (every
    column computed, nothing written), or collected as Arrow like the hot sink does; the records are cached in
    4 partitions as the topic's. Figures per step: wall time (best of ``repeats``) and the CPU time of the JVM
    and of the Python workers (the lowest of the repeats; steadier than the wall time on a shared machine).
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from common.settings import Settings
    from common.spark import spark_session
    from stream.contract import EVENT_COLUMNS
    from stream.records import valid_events

    spark = spark_session(Settings(), "bench-stream-contract")
    try:
        records = spark.createDataFrame(batch.to_pandas()).repartition(4).cache()
        records.count()
        kafka = records.select(F.col("value").cast("binary").alias("value"), "topic", "partition", "offset",
                               "timestamp")

        def contract(**kw) -> object:
            rules = RecordContract(MAX_AGE, MAX_FUTURE, **kw)
            return kafka.mapInArrow(rules, rules.ddl)

        def noop(frame) -> None:
            frame.write.format("noop").mode("overwrite").save()

        def shuffled(frame) -> object:
            return frame.repartition(2, "tenant", "event_id")

        event = T.ArrayType(T.StructType([T.StructField(name, T.DoubleType() if name == "revenue" else T.StringType())
                                          for name in EVENT_COLUMNS]))
        steps = {
            "read_records": lambda: noop(kafka),
            "to_python_and_back": lambda: noop(kafka.mapInArrow(lambda it: it, kafka.schema)),
            "contract": lambda: noop(contract()),
            "contract_rejections_only": lambda: noop(contract(rejections_only=True)),
            "valid_events_text_cast": lambda: noop(valid_events(contract())),
            "valid_events_typed_instants": lambda: noop(valid_events(contract(instants=True))),
            "typed_shuffled": lambda: noop(shuffled(valid_events(contract(instants=True)))),
            "typed_shuffled_to_arrow": lambda: shuffled(valid_events(contract(instants=True))).toArrow(),
            "jvm_from_json_no_checks": lambda: noop(
                kafka.select(F.explode(F.from_json(F.col("value").cast("string"), event)).alias("e")).select("e.*")
                .withColumn("timestamp", F.col("timestamp").cast("timestamp"))
                .withColumn("received_at", F.col("received_at").cast("timestamp"))),
        }
        jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
        for step in steps.values():
            step()  # warm-up: the JIT and the Python workers
        best = {name: [float("inf")] * 3 for name in steps}
        for _ in range(repeats):
            for name, step in steps.items():
                cpu_before = _cpu(jvm)
                started = time.perf_counter()
                step()
                wall = time.perf_counter() - started
                cpu_after = _cpu(jvm)
                figures = (wall, cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1])
                best[name] = [min(a, b) for a, b in zip(best[name], figures, strict=True)]
        return {"spark_split": {name: {"wall_s": round(wall, 2), "events_per_s": round(events / wall),
                                       "jvm_cpu_s": round(jvm_s, 2), "python_workers_cpu_s": round(py_s, 2),
                                       "cpu_us_per_event": round((jvm_s + py_s) / events * 1e6, 2)}
                                for name, (wall, jvm_s, py_s) in best.items()}}
    finally:
        spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--spark", action="store_true", help="also inside a local Spark session (about a minute)")
    parser.add_argument("--label", default="", help="appended to the results file's name")
    args = parser.parse_args()
    batch = kafka_batch(args.events)
    load_before = os.getloadavg()
    result = {"benchmark": "stream_contract", "when": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "events": args.events, "events_per_record": EVENTS_PER_MESSAGE,
              **in_process(batch, args.events, args.repeats)}
    result["column_wise_speedup"] = round(result["per_event_us_per_event"] / result["column_wise_us_per_event"], 2)
    if args.spark:
        result |= in_spark(batch, args.events, max(1, args.repeats // 3))
        result["spark_repeats"] = max(1, args.repeats // 3)
    result["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result, indent=2))
    target = RESULTS.replace(".json", f"-{args.label}.json") if args.label else RESULTS
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w") as out:
        out.write(json.dumps(result, indent=2) + "\n")
    print(f"== written to {target}")


if __name__ == "__main__":
    main()
