"""How long the compliance audit takes on a lake holding the full seven years, and how big its report is.

Builds a synthetic local lake in the agreed layout at full size — one year of archive hours (manifest +
one small Parquet file each) and warm hourly rollups, cold raw-event days from the warm horizon to the
retention limit, cold daily rollups for every day — then times the inventory (listing, manifests,
footers), the rules, and the JSON and HTML rendering. The files are tiny: the audit reads metadata only,
so its cost grows with the number of partitions, not with the data. No hot tier (reported unreadable).

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
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bench.memory import MemorySampler
from common.settings import Settings
from storage_tiers.compliance.audit_report import report_html, report_json, run_audit
from storage_tiers.policy import load_policy

RESULTS = Path(__file__).resolve().parent / "results" / "audit_inventory.json"


def _write(folder: Path, table: pa.Table, manifest: dict[str, Any] | None, name: str = "part-0.parquet") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / name, compression="zstd")
    if manifest is not None:
        manifest |= {"rows": table.num_rows, "bytes": (folder / name).stat().st_size,
                     "files": [{"path": name, "rows": table.num_rows}]}
        (folder / "_manifest.json").write_text(json.dumps(manifest))


def build_lake(root: Path, now: datetime, years: int) -> dict[str, int]:
    """Write the lake; returns the number of partitions per dataset × tier."""
    hour0 = now.replace(minute=0, second=0, microsecond=0)
    today = hour0.replace(hour=0)
    counts = {"events/warm": 0, "rollups_hourly/warm": 0, "events/cold": 0, "rollups_daily/cold": 0}
    for h in range(1, 365 * 24):
        hour = hour0 - timedelta(hours=h + 3)
        times = pa.array([hour + timedelta(minutes=m) for m in range(0, 60, 6)], pa.timestamp("ms", tz="UTC"))
        events = pa.table({"tenant": ["acme"] * 10, "event": ["page_view"] * 10, "timestamp": times})
        part = f"dt={hour:%Y-%m-%d}/hour={hour:%H}"
        _write(root / "archive/events" / part, events,
               {"min_event_time": times[0].as_py().isoformat(), "max_event_time": times[-1].as_py().isoformat()},
               "part-x-00000.zstd.parquet")
        rollups = pa.table({"tenant": ["acme"], "hour": pa.array([hour], pa.timestamp("us", tz="UTC")),
                            "events": [10]})
        _write(root / "warm/rollups_hourly" / part, rollups, None, "part-00000.c000.zstd.parquet")
        counts["events/warm"] += 1
        counts["rollups_hourly/warm"] += 1
    for d in range(1, round(years * 365.25)):
        day = today - timedelta(days=d)
        daily = pa.table({"tenant": ["acme"], "day": pa.array([day], pa.timestamp("us", tz="UTC")), "events": [240]})
        _write(root / "cold/rollups_daily" / f"dt={day:%Y-%m-%d}", daily, {"tenants": {"acme": 1}})
        counts["rollups_daily/cold"] += 1
        if d >= 365:
            times = pa.array([day + timedelta(hours=h) for h in range(24)], pa.timestamp("ms", tz="UTC"))
            events = pa.table({"tenant": ["acme"] * 24, "event": ["page_view"] * 24, "timestamp": times})
            _write(root / "cold/events" / f"dt={day:%Y-%m-%d}", events, {"tenants": {"acme": 24}})
            counts["events/cold"] += 1
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
    counts = build_lake(home / "lake", now, args.years)
    build_s = time.perf_counter() - started
    files = sum(1 for _ in (home / "lake").rglob("*.parquet"))
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
