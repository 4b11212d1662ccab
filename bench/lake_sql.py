"""Benchmark: DuckDB over a lake of many partitions — what the views and the API's lake path cost.

Why: every dataset of the lake is a Delta table (read through its log: the live files of a version); latency
grows with the number of partitions, most on S3. This measures it on a lake shaped like production after a
year: ``--warm-days`` days of hourly rollups (24 partitions a day, one commit per day and a checkpoint at the
end, so the log is replayed from the checkpoint as in production), ``--cold-days`` days of daily rollups and
cold events (one commit per day, as the tier movers commit them, and a checkpoint), and two weeks of archive
hours, with small files (the figures are about planning and file opening, not scanning). The
one-day series is also measured through DuckDB's ``delta_scan`` (the delta extension's own planning) to
compare it with the file list the reader takes from the log.

For each of the local file system and MinIO (started alone on free ports): opening a connection with
the views, and the p50/p95 of ``--repeat`` runs of: a one-day hourly series and a one-year daily series
through ``QueryEngine.run`` (forced warm/cold tier: ``serving.query.sql_compile``'s SQL read through
``LakeRollupReader``, which takes only the range's files from the log) and the same compiled statements over
the views (every live file of the table's version), a one-day ``events`` count through the view, and an unfiltered
count over ``rollups_daily``, each with the files it read (``files_read``).

Usage: ``python -m bench.lake_sql [--warm-days 365] [--cold-days 730] [--repeat 20] [--no-minio]``.
Figures are printed and written to ``bench/results/lake_sql.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from bench.memory import MemorySampler
from common.events import EVENT_ARROW_SCHEMA
from common.lake_duckdb import load_delta
from common.lake_tables import (
    ARCHIVE_TABLE,
    COLD_EVENTS_TABLE,
    COLD_ROLLUPS_DAILY_TABLE,
    ROLLUPS_HOURLY_TABLE,
    append_rows,
    open_table,
    table_uri,
    with_partition_columns,
)
from common.settings import Settings
from serving.query.engine import QueryEngine
from serving.query.spec import QuerySpec, SpecInput, build_spec
from serving.query.sql_compile import compile_segment
from serving.query.tier_routing import Horizons, plan
from storage_tiers.lake.reader import LakeRollupReader
from storage_tiers.lake.sql import files_read, lake_connection

RESULTS = Path(__file__).resolve().parent / "results" / "lake_sql.json"
LAST_DAY = date(2026, 11, 22)
ROLLUP_SCHEMA = pa.schema([("tenant", pa.string()), ("event", pa.string()), ("country", pa.string()),
                           ("device", pa.string()), ("page", pa.string()), ("hour", pa.timestamp("us", tz="UTC")),
                           ("events", pa.int64()), ("revenue", pa.float64()), ("user_ids", pa.list_(pa.string()))])


def _rollup(start: datetime, column: str) -> pa.Table:
    rows = [{"tenant": t, "event": e, "country": c, "device": "mobile", "page": "/", column: start, "events": 3,
             "revenue": 1.5, "user_ids": [f"u{i}" for i in range(3)]}
            for t in ("acme", "globex") for e in ("page_view", "click") for c in ("DE", "FR")]
    schema = pa.schema([f if f.name != "hour" else pa.field(column, f.type) for f in ROLLUP_SCHEMA])
    return pa.Table.from_pylist(rows, schema=schema)


def _events(start: datetime, n: int) -> pa.Table:
    rows = [{"tenant": "acme", "event": "page_view", "timestamp": start + timedelta(seconds=i),
             "event_id": f"{start}-{i}", "user_id": f"u{i % 7}", "page": "/", "country": "DE", "device": "mobile",
             "revenue": 0.0,
             "properties": None, "received_at": start} for i in range(n)]
    return pa.Table.from_pylist(rows, schema=EVENT_ARROW_SCHEMA)


def build(settings: Settings, warm_days: int, cold_days: int) -> int:
    """Writes the lake; returns the number of data files."""
    files = 0
    for table, days, make in ((ROLLUPS_HOURLY_TABLE, warm_days, lambda start: _rollup(start, "hour")),
                              (ARCHIVE_TABLE, 14, lambda start: _events(start, 20))):
        for d in range(days):
            day = LAST_DAY - timedelta(days=d)
            hours = [datetime(day.year, day.month, day.day, hour, tzinfo=UTC) for hour in range(24)]
            append_rows(settings, table, pa.concat_tables([with_partition_columns(make(h), table, h) for h in hours]),
                        "bench", {"day": str(day)})
            files += 24
        open_table(settings, table).create_checkpoint()
    for table, make in ((COLD_ROLLUPS_DAILY_TABLE, lambda start: _rollup(start, "day")),
                        (COLD_EVENTS_TABLE, lambda start: _events(start, 20))):
        for d in range(365, 365 + cold_days):
            day = LAST_DAY - timedelta(days=d)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            append_rows(settings, table, with_partition_columns(make(start), table, start), "bench", {"day": str(day)})
            files += 1
        open_table(settings, table).create_checkpoint()
    return files


def _timed(fn: Any, repeat: int) -> dict[str, float]:
    fn()  # first run apart: caches, lazy loading
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]
    return {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1)}


def measure(settings: Settings, repeat: int) -> dict[str, Any]:
    started = time.perf_counter()
    con = lake_connection(settings)
    open_ms = round((time.perf_counter() - started) * 1000, 1)
    reader = LakeRollupReader(settings)
    engine = QueryEngine(None, reader)
    now = datetime(LAST_DAY.year, LAST_DAY.month, LAST_DAY.day, tzinfo=UTC) + timedelta(days=1)
    day = datetime.combine(LAST_DAY - timedelta(days=10), datetime.min.time(), UTC)
    one_day = build_spec(SpecInput(["events"], start=day, end=day + timedelta(days=1), granularity="hour",
                                   dimensions=["country"], tier="warm"), now=now)
    year_end = datetime.combine(LAST_DAY - timedelta(days=365), datetime.min.time(), UTC)
    one_year = build_spec(SpecInput(["unique_users"], start=year_end - timedelta(days=365), end=year_end,
                                    granularity="day", tier="cold"), now=now)
    view_day = ("SELECT count(*) FROM events WHERE dt = $d", {"d": LAST_DAY - timedelta(days=3)})
    scan = con.cursor()
    load_delta(scan)
    delta_day = ("SELECT country, date_trunc('hour', hour) AS h, sum(events) FROM delta_scan($t) "
                 "WHERE tenant = 'acme' AND dt = $d GROUP BY ALL",
                 {"t": table_uri(settings, ROLLUPS_HOURLY_TABLE), "d": day.date()})
    all_daily = ("SELECT sum(events) FROM rollups_daily", None)

    def statement(spec: QuerySpec, narrowed: bool) -> tuple[str, dict[str, Any]]:
        """The engine's statement: through the reader's relation (the range's folders) or over the view."""
        (segment,) = plan(spec, now, Horizons())
        relation = reader.relation(segment.source.table, segment.start, segment.end) if narrowed else None
        return compile_segment(spec, segment, "acme", whole=True, relation=relation)

    try:
        figures = {
            "open connection with views_ms": open_ms,
            "engine (lake reader): 1-day hourly series by country": {
                **_timed(lambda: engine.run("acme", one_day, now), repeat),
                "rows": len(engine.run("acme", one_day, now).rows),
                "files_read": _plan_files(reader.explain(*statement(one_day, narrowed=True)))},
            "engine (lake reader): 1-year daily unique users": {
                **_timed(lambda: engine.run("acme", one_year, now), repeat),
                "rows": len(engine.run("acme", one_year, now).rows),
                "files_read": _plan_files(reader.explain(*statement(one_year, narrowed=True)))},
            "same 1-day series through delta_scan (the delta extension plans from the log)": {
                **_timed(lambda: scan.execute(*delta_day).fetchall(), repeat),
                "rows": len(scan.execute(*delta_day).fetchall())},
            "the reader's file list of one day from the log (cached table, no listing)": _timed(
                lambda: reader.files("rollups_hourly", day, day + timedelta(days=1)), repeat),
            "same 1-day series over the rollups_hourly view (every file of the table's version)": {
                **_timed(lambda: con.execute(*statement(one_day, narrowed=False)).fetchall(), repeat),
                "files_read": files_read(con, *statement(one_day, narrowed=False))},
            "same 1-year series over the rollups_daily view": {
                **_timed(lambda: con.execute(*statement(one_year, narrowed=False)).fetchall(), repeat),
                "files_read": files_read(con, *statement(one_year, narrowed=False))},
            "view: events count, dt = one day": {
                **_timed(lambda: con.execute(*view_day).fetchall(), repeat),
                "files_read": files_read(con, *view_day)},
            "view: rollups_daily, no filter": {
                **_timed(lambda: con.execute(*all_daily).fetchall(), repeat),
                "files_read": files_read(con, *all_daily)},
        }
    finally:
        reader.close()
        scan.close()
        con.close()
    return figures


def _plan_files(plan: str) -> int:
    import re

    return sum(int(n) for n in re.findall(r"Total Files Read:\s*(\d+)", plan))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm-days", type=int, default=365)
    parser.add_argument("--cold-days", type=int, default=730)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-minio", action="store_true", help="only the local file system")
    args = parser.parse_args()
    memory = MemorySampler().start()  # this process and what it starts (Spark, MinIO): in the results
    load_at_start = round(os.getloadavg()[0], 2)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-lake-sql-") as tmp:
        local = Settings(home=Path(tmp) / "home", lake_uri=str(Path(tmp) / "lake"))
        started = time.perf_counter()
        files = build(local, args.warm_days, args.cold_days)
        print(f"== local lake: {files:,} data files written in {time.perf_counter() - started:.1f}s")
        results["local"] = measure(local, args.repeat)
        print(json.dumps(results["local"], indent=1))
        if not args.no_minio:
            from tests.integration.own_services import free_pair, minio_alone

            s3 = Settings(home=Path(tmp) / "minio-home", s3_endpoint=f"http://127.0.0.1:{free_pair()}",
                          lake_uri="s3://bench-lake/lake", minio_manage=True, kafka_manage=False, redis_manage=False)
            with minio_alone(s3):
                started = time.perf_counter()
                build(s3, args.warm_days, args.cold_days)
                print(f"== MinIO lake written in {time.perf_counter() - started:.1f}s")
                results["minio"] = measure(s3, args.repeat)
                print(json.dumps(results["minio"], indent=1))
    memory.stop()
    result = {
        "memory": memory.report(),
        "benchmark": "lake_sql",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python -m bench.lake_sql --warm-days {args.warm_days} --cold-days {args.cold_days} "
                   f"--repeat {args.repeat}" + (" --no-minio" if args.no_minio else ""),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "duckdb": duckdb.__version__,
                    "load_avg_1m_at_start": load_at_start, "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "data": {"warm_hourly_folders": args.warm_days * 24, "archive_hours": 14 * 24,
                 "cold_days (daily rollups and events)": args.cold_days, "data_files": files},
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"== written to {RESULTS}")


if __name__ == "__main__":
    main()
