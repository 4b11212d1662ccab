"""Benchmark: the stream's event contract per event, per-event path against column-wise, side by side.

In process (no services): API-shaped records (``EVENTS_PER_MESSAGE`` normalized events each, as
``bench.freshness_throughput`` produces them) through ``RecordContract.apply`` three ways, alternately
on the same batch: every record through ``events_of_record`` (the path before the column-wise one),
column-wise, and column-wise for rejections only (the dead-letter query). CPU time, best of
``--repeats``.

``--spark`` adds the same contract inside a local Spark session (``mapInArrow`` over a cached
DataFrame of the records, 2 partitions): the cost the stream's queries pay with Spark's transfer
to and from the Python workers, and what the hot path adds after it (typed events collected to the
driver as Arrow, a de-duplication by ``(tenant, event_id)``).

Usage: ``python -m bench.stream_contract [--events 100000] [--repeats 7] [--spark]``; figures are printed
and written to ``bench/results/stream_contract.json``.
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
from stream.contract import CONTRACT_DDL, RecordContract

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


def in_spark(batch: pa.RecordBatch, events: int, repeats: int) -> dict[str, float]:
    from pyspark.sql import functions as F

    from common.settings import Settings
    from common.spark import spark_session
    from stream.job import valid_events

    spark = spark_session(Settings(), "bench-stream-contract")
    try:
        records = spark.createDataFrame(batch.to_pylist()).repartition(2).cache()
        records.count()

        def contract(**kw) -> object:
            return records.select(F.col("value").cast("binary").alias("value"), "topic", "partition", "offset",
                                  "timestamp").mapInArrow(RecordContract(MAX_AGE, MAX_FUTURE, **kw), CONTRACT_DDL)

        steps = {
            "read_records": lambda: records.where(F.length("value") > 0).count(),
            "per_event": lambda: contract(columnar=False).count(),
            "column_wise": lambda: contract().count(),
            "column_wise_rejections_only": lambda: contract(rejections_only=True).count(),
            "column_wise_typed_to_arrow": lambda: valid_events(contract()).toArrow(),
            "column_wise_typed_deduplicated": lambda: valid_events(contract()).dropDuplicates(
                ["tenant", "event_id"]).count(),
        }
        best = dict.fromkeys(steps, float("inf"))
        for _ in range(repeats):
            for name, step in steps.items():
                started = time.perf_counter()
                step()
                best[name] = min(best[name], time.perf_counter() - started)
        return {f"spark_{name}_events_per_s": round(events / seconds) for name, seconds in best.items()}
    finally:
        spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--spark", action="store_true", help="also inside a local Spark session (about a minute)")
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
    result["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result, indent=2))
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as out:
        out.write(json.dumps(result, indent=2) + "\n")
    print(f"== written to {RESULTS}")


if __name__ == "__main__":
    main()
