"""Benchmark: the batch layer's hourly recompute, PySpark (``batch.hourly``) against DuckDB, on one hour.

Why: the batch layer runs PySpark so that the same jobs scale out on a cluster, but one hour of events
fits one machine. This measures what that choice costs on one machine, and checks on the way that the
two engines agree to the row, so that ``sql/duckdb/rollups_minute.sql`` is a trustworthy way for a data
scientist to recompute an hour without Spark.

1. ``--events`` clickstream events of one hour are generated with numpy (same distributions as
   ``demo.clickstream``; generation is not measured) and written like the archive: zstd Parquet files
   in the hour's Hive partition, sorted by tenant, event and time.
2. PySpark: ``recompute_hour`` in a local session (``local[2]``, or ``--standalone`` for a one-worker
   standalone cluster started from the wheel); the session's start-up is reported apart, and the job
   runs twice (cold, then warm JVM).
3. DuckDB: the same work — minute rollups to Arrow, the hourly rollup written as zstd Parquet, the raw
   events to Arrow — with ``sql/duckdb/rollups_minute.sql``, also twice.
4. Both outputs are compared: same rows, same counts, revenue within 1e-6, same distinct user ids.

Usage: ``python -m bench.recompute_hour [--events 1000000] [--files 4] [--standalone] [--keep]``.
Figures are printed and written to ``bench/results/recompute_hour.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyspark

from bench.memory import MemorySampler
from common.events import EVENT_ARROW_SCHEMA
from common.lake import hour_partition
from common.rollups import ROLLUP_KEYS, ROLLUP_SCHEMA
from common.settings import REPO_ROOT, Settings
from common.sql_files import sql_sections
from demo.archive_files import write_archive_hour
from demo.clickstream import COUNTRIES, DEVICES, EVENTS, PAGES, TENANTS

RESULTS = Path(__file__).resolve().parent / "results" / "recompute_hour.json"
DUCKDB_SQL = "duckdb/rollups_minute.sql"
HOUR = datetime(2026, 11, 23, 9, tzinfo=UTC)
MINUTE_KEYS = ["tenant", "event", "minute", "country", "device", "page"]
HOURLY_KEYS = [*ROLLUP_KEYS, "hour"]


def _weighted(rng: np.random.Generator, table: tuple[tuple[str, int], ...], n: int) -> pa.Array:
    names, weights = zip(*table, strict=True)
    p = np.asarray(weights, dtype=float)
    return pa.DictionaryArray.from_arrays(rng.choice(len(names), size=n, p=p / p.sum()).astype(np.int32),
                                          pa.array(names)).cast(pa.string())


def generate_hour(n: int, users_per_tenant: int, seed: int = 42) -> pa.Table:
    """``n`` distinct events spread over ``HOUR`` (EVENT_ARROW_SCHEMA), vectorised: Python's per-event
    generator would take longer than the job being measured. Distributions follow ``demo.clickstream``."""
    rng = np.random.default_rng(seed)
    offsets_ms = np.sort(rng.integers(0, 3_600_000, size=n))
    ts = pa.array(offsets_ms + int(HOUR.timestamp() * 1000), pa.timestamp("ms", tz="UTC"))
    event = _weighted(rng, EVENTS, n)
    purchase = pc.equal(event, "purchase").to_numpy(zero_copy_only=False)
    revenue = np.where(purchase, np.round(rng.uniform(5, 250, size=n), 2), 0.0)
    users = (users_per_tenant * rng.random(n) ** 2).astype(np.int64)  # Zipf-like, as the demo's generator
    pages = np.minimum(np.floor(rng.pareto(1.2, size=n)).astype(np.int64), len(PAGES) - 1)
    raw_ids = rng.bytes(16 * n).hex()
    ids = [f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:32]}"
           for h in (raw_ids[i:i + 32] for i in range(0, 32 * n, 32))]
    received = pa.array(offsets_ms + int(HOUR.timestamp() * 1000) + rng.integers(5, 2_000, size=n),
                        pa.timestamp("ms", tz="UTC"))
    return pa.table(
        {
            "tenant": pa.array(np.asarray(TENANTS)[rng.integers(0, len(TENANTS), size=n)]),
            "event": event,
            "timestamp": ts,
            "event_id": pa.array(ids),
            "user_id": pc.cast(pa.array(users), pa.string()),
            "page": pa.array(np.asarray(PAGES)[pages]),
            "country": _weighted(rng, COUNTRIES, n),
            "device": _weighted(rng, DEVICES, n),
            "revenue": pa.array(revenue),
            "properties": pa.array([""] * n),
            "received_at": received,
        },
        schema=EVENT_ARROW_SCHEMA,
    )


@dataclass
class EngineRun:
    seconds: float
    minute_rollups: pa.Table
    hourly_rollups: pa.Table
    raw_rows: int
    steps: dict[str, float]
    load_avg_1m: float = 0.0  # at the start of the run: other work on a 2-core machine skews it


def run_spark(settings: Settings, files: list[str], runs: int) -> tuple[float, list[EngineRun], str]:
    """Session start-up, then ``recompute_hour`` ``runs`` times in the same session."""
    from batch.hourly import recompute_hour
    from common.spark import spark_session

    started = time.perf_counter()
    spark = spark_session(settings, "lakehouse-bench-recompute-hour")
    spark.range(1).count()  # the first job starts the executors: part of start-up, not of the recompute
    startup = time.perf_counter() - started
    master = spark.sparkContext.master
    out = []
    try:
        for _ in range(runs):
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            result = recompute_hour(spark, settings, HOUR, files)
            seconds = time.perf_counter() - t0
            hourly = pa.concat_tables(pq.read_table(p) for p in sorted(Path(result.warm_path).glob("*.parquet")))
            out.append(EngineRun(seconds, result.minute_rollups, hourly, result.raw_events.num_rows, {}, load))
    finally:
        spark.stop()
    return startup, out, master


def run_duckdb(files: list[str], hourly_path: Path, threads: int) -> EngineRun:
    """The same recompute in DuckDB: minute rollups and raw events to Arrow, hourly rollup to zstd Parquet."""
    sql = sql_sections(DUCKDB_SQL)
    hourly_path.parent.mkdir(parents=True, exist_ok=True)
    steps: dict[str, float] = {}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    steps["connect"] = time.perf_counter() - t0
    try:
        con.execute(sql["timezone"])
        t = time.perf_counter()
        con.execute(sql["events"], {"files": files})
        steps["read"] = time.perf_counter() - t
        t = time.perf_counter()
        minute = con.execute(sql["rollups_minute"]).to_arrow_table().cast(ROLLUP_SCHEMA)
        steps["rollups_minute"] = time.perf_counter() - t
        t = time.perf_counter()
        con.execute(sql["rollups_hourly"], {"hourly_path": str(hourly_path)})
        steps["rollups_hourly"] = time.perf_counter() - t
        t = time.perf_counter()
        raw = con.execute(sql["raw_events"]).to_arrow_table().cast(EVENT_ARROW_SCHEMA)
        steps["raw_events"] = time.perf_counter() - t
    finally:
        con.close()
    seconds = time.perf_counter() - t0
    return EngineRun(seconds, minute, pq.read_table(hourly_path), raw.num_rows,
                     {k: round(v, 3) for k, v in steps.items()}, load)


def _normalized_hourly(table: pa.Table) -> pa.Table:
    """Spark writes timestamps as INT96 (read back without a zone); DuckDB as UTC micros: compare as UTC."""
    hour = table["hour"]
    if hour.type.tz is None:
        hour = pc.assume_timezone(hour, "UTC")
    return pa.table({**{k: table[k] for k in ROLLUP_KEYS}, "hour": hour.cast(pa.timestamp("s", tz="UTC")),
                     "events": table["events"].cast(pa.int64()), "revenue": table["revenue"],
                     "user_ids": table["user_ids"].cast(pa.list_(pa.string()))})


def compare(spark: pa.Table, duck: pa.Table, keys: list[str]) -> dict[str, Any]:
    """Same rows (keys), same counts, revenue within 1e-6, same sorted distinct user ids — or a diff summary."""
    a = spark.sort_by([(k, "ascending") for k in keys]).combine_chunks()
    b = duck.sort_by([(k, "ascending") for k in keys]).combine_chunks()
    report: dict[str, Any] = {"rows_spark": a.num_rows, "rows_duckdb": b.num_rows}
    if a.num_rows != b.num_rows:
        report["identical"] = False
        return report
    same_keys = all(a[k].equals(b[k]) for k in keys)
    same_counts = a["events"].equals(b["events"])
    revenue_diff = pc.max(pc.abs(pc.subtract(a["revenue"], b["revenue"]))).as_py() or 0.0
    users_a, users_b = pc.list_value_length(a["user_ids"]), pc.list_value_length(b["user_ids"])
    same_user_counts = users_a.equals(users_b)
    same_user_ids = same_user_counts and pc.list_flatten(a["user_ids"]).equals(pc.list_flatten(b["user_ids"]))
    report |= {"same_keys": same_keys, "same_counts": same_counts, "max_revenue_diff": revenue_diff,
               "same_distinct_user_counts": same_user_counts, "same_user_ids": same_user_ids,
               "events_total": pc.sum(a["events"]).as_py(), "revenue_total": round(pc.sum(a["revenue"]).as_py(), 2)}
    report["identical"] = bool(same_keys and same_counts and revenue_diff <= 1e-6 and same_user_ids)
    return report


def machine() -> dict[str, Any]:
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "0")
    return {"cpus": os.cpu_count(), "memory_gib": round(int(mem) / 2**20, 1), "python": platform.python_version(),
            "platform": platform.platform(), "java": java[0] if java else "?", "pyspark": pyspark.__version__,
            "duckdb": duckdb.__version__, "pyarrow": pa.__version__,
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=4, help="archive files the hour is split into")
    parser.add_argument("--users-per-tenant", type=int, default=5000, help="as demo.clickstream's default")
    parser.add_argument("--runs", type=int, default=2, help="runs per engine (the first is cold)")
    parser.add_argument("--standalone", action="store_true",
                        help="run Spark on a one-worker standalone cluster started from the wheel, not local[2]")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    memory = MemorySampler().start()  # this process and what it starts (Spark, MinIO): in the results

    load_at_start = round(os.getloadavg()[0], 2)  # other work on the machine skews the figures: recorded
    home = REPO_ROOT / ".lakehouse" / "bench-recompute-hour"
    shutil.rmtree(home, ignore_errors=True)
    cpus = os.cpu_count() or 2
    settings = Settings(home=home, lake_uri="", spark_master=f"local[{cpus}]", spark_conf="")

    print(f"== generating {args.events:,} events of {HOUR:%Y-%m-%d %H}:00 UTC (not measured)")
    t = time.perf_counter()
    files = write_archive_hour(settings, HOUR, generate_hour(args.events, args.users_per_tenant), args.files)
    size = sum(Path(f).stat().st_size for f in files)
    print(f"   {len(files)} zstd Parquet files, {size / 2**20:.1f} MiB, in {time.perf_counter() - t:.1f}s")

    cluster = None
    if args.standalone:
        from batch.spark_cluster import StandaloneCluster

        cluster = StandaloneCluster(home / "spark-standalone", cores=cpus, memory="2g").start()
        settings = settings.model_copy(update={"spark_master": cluster.master_url, "spark_conf": cluster.driver_conf})
    try:
        print(f"== PySpark recompute_hour on {settings.spark_master}")
        startup, spark_runs, master = run_spark(settings, files, args.runs)
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"   session start-up {startup:.1f}s; runs " + ", ".join(f"{r.seconds:.2f}s" for r in spark_runs))

    print(f"== DuckDB {duckdb.__version__} ({cpus} threads), sql/duckdb/rollups_minute.sql")
    duck_runs = [run_duckdb(files, home / "duckdb" / hour_partition(HOUR) / "rollups_hourly.zstd.parquet", cpus)
                 for _ in range(args.runs)]
    print("   runs " + ", ".join(f"{r.seconds:.2f}s {r.steps}" for r in duck_runs))

    spark_last, duck_last = spark_runs[-1], duck_runs[-1]
    checks = {
        "minute_rollups": compare(spark_last.minute_rollups, duck_last.minute_rollups, MINUTE_KEYS),
        "hourly_rollups": compare(_normalized_hourly(spark_last.hourly_rollups),
                                  _normalized_hourly(duck_last.hourly_rollups), HOURLY_KEYS),
        "raw_events": {"spark": spark_last.raw_rows, "duckdb": duck_last.raw_rows, "expected": args.events},
    }
    identical = (checks["minute_rollups"]["identical"] and checks["hourly_rollups"]["identical"]
                 and spark_last.raw_rows == duck_last.raw_rows == args.events)

    def figures(runs: list[EngineRun]) -> dict[str, Any]:
        return {"cold_s": round(runs[0].seconds, 2), "warm_s": round(runs[-1].seconds, 2),
                "cold_events_per_s": round(args.events / runs[0].seconds),
                "warm_events_per_s": round(args.events / runs[-1].seconds),
                "runs_s": [round(r.seconds, 2) for r in runs],
                "load_avg_1m_per_run": [round(r.load_avg_1m, 2) for r in runs]}

    spark_fig = {"master": master, "session_startup_s": round(startup, 2), **figures(spark_runs)}
    duck_fig = {"threads": cpus, **figures(duck_runs), "warm_steps_s": duck_runs[-1].steps}
    print()
    print(f"   {'':30}{'PySpark':>14}{'DuckDB':>14}")
    print(f"   {'session start-up (s)':30}{startup:>14.2f}{duck_runs[-1].steps['connect']:>14.3f}")
    for label, key in (("cold run (s)", "cold_s"), ("warm run (s)", "warm_s"),
                       ("cold events/s", "cold_events_per_s"), ("warm events/s", "warm_events_per_s")):
        print(f"   {label:30}{spark_fig[key]:>14,}{duck_fig[key]:>14,}")
    print(f"   {'minute rollup rows':30}{spark_last.minute_rollups.num_rows:>14,}"
          f"{duck_last.minute_rollups.num_rows:>14,}")
    print(f"   {'hourly rollup rows':30}{spark_last.hourly_rollups.num_rows:>14,}"
          f"{duck_last.hourly_rollups.num_rows:>14,}")
    print(f"   identical rollups: {identical}  {json.dumps(checks)}")

    command = f"python -m bench.recompute_hour --events {args.events} --files {args.files}" + (
        " --standalone" if args.standalone else "")
    memory.stop()
    result = {
        "memory": memory.report(),
        "benchmark": "recompute_hour",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": {**machine(), "load_avg_1m_at_start": load_at_start},
        "data": {"events": args.events, "hour": HOUR.isoformat(), "archive_files": len(files),
                 "archive_mib": round(size / 2**20, 1), "users_per_tenant": args.users_per_tenant,
                 "tenants": len(TENANTS)},
        "work": "minute rollups (count, sum revenue, sorted distinct user ids per tenant x event x minute x "
                "country x device x page) to Arrow, hourly rollup to zstd Parquet, raw events to Arrow",
        "pyspark": spark_fig,
        "duckdb": duck_fig,
        "speedup_warm_duckdb_over_spark": round(spark_runs[-1].seconds / duck_runs[-1].seconds, 1),
        "identical": identical,
        "checks": checks,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"== written to {RESULTS}")
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    if not identical:
        raise SystemExit("PySpark and DuckDB disagree: see 'checks' above")


if __name__ == "__main__":
    main()
