"""How long the compliance audit takes on a lake holding the full seven years, and how big its report is.

Builds a synthetic local lake of Delta tables at full size — one year of archive hours and warm hourly rollups
(one small file per hour, one commit per day), cold raw-event days from the warm horizon to the retention
limit and cold daily rollups for every day (one small file per day, one commit per month), each table
checkpointed — then times the inventory (the tables' logs: live files, sizes, row counts and per-file
statistics; the archive's history for the hours committed empty), the rules, and the JSON and HTML
rendering. The files are tiny: the audit reads metadata only, so its cost grows with the number of
partitions (and of commits), not with the data. No hot tier (reported unreadable). The batch layer commits
the archive once per hour, so a production log holds ~24x the commits written here; with checkpoints that
weighs only on the history read (``empty_hours``).

``python -m bench.audit_inventory [--years 7] [--keep]``; figures are printed and written to
``bench/results/audit_inventory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from bench.memory import MemorySampler
from common.events import EVENT_ARROW_SCHEMA
from common.lake_tables import (
    ARCHIVE_TABLE,
    COLD_EVENTS_TABLE,
    COLD_ROLLUPS_DAILY_TABLE,
    ROLLUPS_HOURLY_SCHEMA,
    ROLLUPS_HOURLY_TABLE,
    WarmTable,
    append_rows,
    open_table,
    with_partition_columns,
)
from common.settings import Settings
from storage_tiers.compliance.audit_report import report_html, report_json, run_audit
from storage_tiers.policy import load_policy

RESULTS = Path(__file__).resolve().parent / "results" / "audit_inventory.json"


def _events(times: list[datetime]) -> pa.Table:
    n = len(times)
    return pa.table({"tenant": ["acme"] * n, "event": ["page_view"] * n,
                     "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
                     "event_id": [f"{t:%Y%m%d%H%M}-{i}" for i, t in enumerate(times)], "user_id": ["u"] * n,
                     "page": ["/"] * n, "country": ["DE"] * n, "device": ["mobile"] * n, "revenue": [0.0] * n,
                     "properties": [None] * n, "received_at": pa.array(times, pa.timestamp("us", tz="UTC"))}
                    ).cast(EVENT_ARROW_SCHEMA)


def _rollups(at: datetime, column: str, events: int) -> pa.Table:
    return pa.table({"tenant": ["acme"], "event": ["page_view"], "country": ["DE"], "device": ["mobile"],
                     "page": ["/"], column: pa.array([at], pa.timestamp("us", tz="UTC")), "events": [events],
                     "revenue": [0.0], "user_ids": [["u"]]}).cast(pa.schema(
                         [f if f.name != "hour" else pa.field(column, f.type) for f in ROLLUPS_HOURLY_SCHEMA]))


def _commit(settings: Settings, table: WarmTable, parts: list[pa.Table]) -> None:
    if parts:
        append_rows(settings, table, pa.concat_tables(parts), "bench", {})


def build_lake(settings: Settings, now: datetime, years: int) -> dict[str, int]:
    """Write the lake's tables; returns the number of partitions per dataset × tier."""
    hour0 = now.replace(minute=0, second=0, microsecond=0)
    today = hour0.replace(hour=0)
    counts = {"events/warm": 0, "rollups_hourly/warm": 0, "events/cold": 0, "rollups_daily/cold": 0}
    archive: list[pa.Table] = []
    rollups: list[pa.Table] = []
    for h in range(1, 365 * 24):
        hour = hour0 - timedelta(hours=h + 3)
        archive.append(with_partition_columns(_events([hour + timedelta(minutes=m) for m in range(0, 60, 6)]),
                                              ARCHIVE_TABLE, hour))
        rollups.append(with_partition_columns(_rollups(hour, "hour", 10), ROLLUPS_HOURLY_TABLE, hour))
        counts["events/warm"] += 1
        counts["rollups_hourly/warm"] += 1
        if len(archive) == 24:
            _commit(settings, ARCHIVE_TABLE, archive)
            _commit(settings, ROLLUPS_HOURLY_TABLE, rollups)
            archive, rollups = [], []
    _commit(settings, ARCHIVE_TABLE, archive)
    _commit(settings, ROLLUPS_HOURLY_TABLE, rollups)
    daily: list[pa.Table] = []
    cold: list[pa.Table] = []
    for d in range(1, round(years * 365.25)):
        day = today - timedelta(days=d)
        daily.append(with_partition_columns(_rollups(day, "day", 240), COLD_ROLLUPS_DAILY_TABLE, day))
        counts["rollups_daily/cold"] += 1
        if d >= 365:
            cold.append(with_partition_columns(_events([day + timedelta(hours=h) for h in range(24)]),
                                               COLD_EVENTS_TABLE, day))
            counts["events/cold"] += 1
        if len(daily) == 30:
            _commit(settings, COLD_ROLLUPS_DAILY_TABLE, daily)
            _commit(settings, COLD_EVENTS_TABLE, cold)
            daily, cold = [], []
    _commit(settings, COLD_ROLLUPS_DAILY_TABLE, daily)
    _commit(settings, COLD_EVENTS_TABLE, cold)
    for table in (ARCHIVE_TABLE, ROLLUPS_HOURLY_TABLE, COLD_EVENTS_TABLE, COLD_ROLLUPS_DAILY_TABLE):
        open_table(settings, table).create_checkpoint()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=int, default=7, help="years of cold data (default 7)")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic lake")
    args = parser.parse_args()
    memory = MemorySampler().start()  # this process and what it starts (Spark, MinIO): in the results
    home = Path(tempfile.mkdtemp(prefix="lakehouse-audit-bench-"))
    settings = Settings(home=home, lake_uri=str(home / "lake"), tier_policy="")
    now = datetime.now(UTC)
    load_at_start = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    counts = build_lake(settings, now, args.years)
    build_s = time.perf_counter() - started
    files = sum(1 for p in (home / "lake").rglob("*.parquet") if "_delta_log" not in str(p))
    print(f"lake written in {build_s:.1f} s: {counts}, {files:,} Parquet files")

    timings = []
    for run in range(2):  # the second run sees the OS file cache warm
        started = time.perf_counter()
        report = run_audit(settings, None, policy=load_policy(settings), as_of=now, hot_error="no hot tier in bench")
        audit_s = time.perf_counter() - started
        started = time.perf_counter()
        document = json.dumps(report_json(report), default=str)
        json_s = time.perf_counter() - started
        started = time.perf_counter()
        page = report_html(report)
        html_s = time.perf_counter() - started
        timings.append({"run": run + 1, "inventory_and_rules_s": round(audit_s, 2), "json_s": round(json_s, 2),
                        "html_s": round(html_s, 2)})
        print(f"run {run + 1}: inventory + rules {audit_s:.2f} s, JSON {json_s:.2f} s ({len(document) / 1e6:.1f} MB), "
              f"HTML {html_s:.2f} s ({len(page) / 1e3:.0f} kB)")
    partitions = {f"{t.dataset}/{t.tier}": len(t.partitions) for t in report.inventory.tiers if t.partitions}
    memory.stop()
    result = {
        "memory": memory.report(),
        "command": f"python -m bench.audit_inventory --years {args.years}",
        "at": now.isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_1m_at_start": load_at_start},
        "lake": {"written_partitions": counts, "parquet_files": files, "build_s": round(build_s, 1)},
        "inventory_partitions": partitions,
        "violations": report.findings.counts(),
        "runs": timings,
        "json_bytes": len(document),
        "html_bytes": len(page),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"== written to {RESULTS}")
    if args.keep:
        print(f"lake kept in {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
