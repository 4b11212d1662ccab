"""Benchmark: does the embedded engine's memory grow with the number of distinct questions?

A dashboard whose range moves with the clock asks a question no one asked before, every time. This runs ``--queries``
aggregations over a table of ``--rows`` rows in embedded chDB, through the hot store's own sessions
(``common.hot_store.ClickHouseHotStore``), with bound parameters as the API sends them. Each arm runs in a fresh
process, because chDB keeps one engine per process:

* ``moving``: each question's range is new (the API's case);
* ``same``: one question over and over (the control);
* ``moving_stats_on``: as ``moving`` with ClickHouse's default ``collect_hash_table_stats_during_aggregation = 1``,
  which the hot store's sessions turn off (``common.hot_store.SESSION_SETTINGS``).

Every ``--every`` questions it reads jemalloc's allocated bytes (chDB's allocator: the memory really held) and
``MemoryTracking`` (what the engine counts; it drifts). It prints the growth per 1,000 questions after the first
sample, and writes ``bench/results/engine_memory_probe[-label].json``.

Usage: ``python -m bench.engine_memory_probe [--queries 12000] [--every 3000] [--rows 200000] [--label L]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "engine_memory_probe.json")
ARMS = ("moving", "same", "moving_stats_on")
QUESTION = ("SELECT toStartOfHour(ts) AS h, count() AS n, sum(v) AS s FROM probe "
            "WHERE tenant = 'acme' AND ts >= now() - {since:UInt32} AND ts < now() - {until:UInt32} "
            "GROUP BY h ORDER BY h")
SAMPLE = ("SELECT (SELECT toFloat64(value) FROM system.metrics WHERE metric = 'MemoryTracking') AS tracked, "
          "(SELECT toFloat64OrZero(extract(stats, 'Allocated: (\\\\d+)')) FROM system.jemalloc_stats) AS allocated")


def run_arm(arm: str, queries: int, every: int, rows: int) -> dict:
    """One arm, in this process (a fresh one: see the module's docstring)."""
    from common import hot_store

    if arm == "moving_stats_on":
        hot_store.SESSION_SETTINGS.pop("collect_hash_table_stats_during_aggregation", None)
    store = hot_store.ClickHouseHotStore(f"chdb://{tempfile.mkdtemp(prefix='engine-memory-')}")
    store.command("CREATE TABLE probe (tenant String, ts DateTime, v UInt64) ENGINE = MergeTree ORDER BY (tenant, ts)")
    store.command(f"INSERT INTO probe SELECT 'acme', now() - number, number FROM numbers({rows})")
    samples = []
    for i in range(queries):
        since = 100 + (i * 7919) % (rows - 6000) if arm != "same" else 5000  # a new range each time
        store.query_arrow(QUESTION, {"since": since + 5000, "until": since})
        if (i + 1) % every == 0:
            row = store.query_arrow(SAMPLE).to_pylist()[0]
            samples.append({"questions": i + 1, "allocated_mib": round(row["allocated"] / 2**20, 3),
                            "tracked_mib": round(row["tracked"] / 2**20, 3)})
    store.close()
    first, last = samples[0], samples[-1]
    per_k = 1000 / (last["questions"] - first["questions"])
    return {"samples": samples,
            "allocated_kib_per_1000": round((last["allocated_mib"] - first["allocated_mib"]) * 1024 * per_k, 1),
            "tracked_kib_per_1000": round((last["tracked_mib"] - first["tracked_mib"]) * 1024 * per_k, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=12_000)
    parser.add_argument("--every", type=int, default=3_000)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--label", default="")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # the child process's own arm
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(run_arm(args.arm, args.queries, args.every, args.rows)))
        return
    result = {"benchmark": "engine_memory_probe", "when": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "queries": args.queries, "rows": args.rows,
              "arms": {}}
    for arm in ARMS:
        print(f"== {arm}: {args.queries:,} questions", flush=True)
        child = subprocess.run([sys.executable, "-m", "bench.engine_memory_probe", "--arm", arm, "--queries",
                                str(args.queries), "--every", str(args.every), "--rows", str(args.rows)],
                               capture_output=True, text=True, check=True)
        arm_result = json.loads(child.stdout.strip().splitlines()[-1])
        result["arms"][arm] = arm_result
        print(f"   jemalloc allocated {arm_result['allocated_kib_per_1000']:+.1f} KiB per 1,000 questions, "
              f"MemoryTracking {arm_result['tracked_kib_per_1000']:+.1f} KiB; "
              + ", ".join(f"{s['questions']:,}: {s['allocated_mib']:.2f} MiB" for s in arm_result["samples"]))
    path = RESULTS.replace(".json", f"-{args.label}.json") if args.label else RESULTS
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"== written to {path}")


if __name__ == "__main__":
    main()
