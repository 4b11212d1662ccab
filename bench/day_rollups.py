"""Benchmark: the 7-day dashboard widgets from rollups_1h alone (old) and with its day copies (new), side by side.

In one process over embedded chDB (the hot tier's engine, no services), for each ``--events`` size in turn: a fresh
hot tier, the dashboard benchmark's synthetic events (``bench.dashboard_latency.synthetic_events``: one tenant, 7
days ending now) written as the stream writes their rollups (``rollups_1m_ingest`` → ``rollups_1m``, ``rollups_1h``),
then every day's closed hours copied (``common.day_rollups.build``, as the batch layer does when it restates an hour:
the current day up to the hour before now, its later hours stay open). Then the widgets of the dashboard benchmark
(events per hour, events by country, top 10 pages by page views) and a day series of unique users, uncached: each
sample moves the 7-day window back one minute, and runs the old engine, the new one and the engine's bare scan of
the same rows (``count()``, ``sum(events)`` over rollups_1h, then over the copies' relation), alternately, so load on
the machine hits both alike. Answers are compared on every sample (they must be equal).

Usage: ``python -m bench.day_rollups [--events 1500000,15000000] [--samples 60]``; figures printed and written to
``bench/results/day_rollups.json``. Loading millions of events is heavy: run it under the integration lock on a shared
machine (docs/benchmarks.md).
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
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bench.dashboard_latency import synthetic_events
from common import day_rollups
from common.hot_schema import migrate
from common.hot_store import ClickHouseHotStore, HotStore
from common.rollups import minute_rollups
from serving.query.engine import QueryEngine
from serving.query.spec import SpecInput, build_spec

RESULTS = Path(__file__).resolve().parent / "results" / "day_rollups.json"
TENANT = "bench-days"
SCAN = ("SELECT count() AS rows, sum(events) AS events FROM {table} WHERE tenant = {tenant:String} "
        "AND hour >= {start:DateTime('UTC')} AND hour < {end:DateTime('UTC')}")


def load(store: HotStore, total: int, end: datetime, slice_hours: int = 12) -> dict:
    """Minute rollups of ``total`` events over the 7 days before ``end`` (and the hour after the window's start
    moves back), one insert per ``slice_hours`` of event time."""
    rng = np.random.default_rng(2026)
    run = uuid.uuid4().hex[:8]
    slices = 7 * 24 // slice_hours + 1
    started, loaded, rows = time.perf_counter(), 0, 0
    for k in range(slices):
        start = end - timedelta(days=7, hours=slice_hours) + timedelta(hours=k * slice_hours)
        events = synthetic_events(TENANT, total // (slices - 1), start, slice_hours * 3600, rng, run, loaded)
        rollups = minute_rollups(events)
        store.insert_arrow("rollups_1m_ingest", rollups, token=f"{run}:{k}")
        loaded, rows = loaded + events.num_rows, rows + rollups.num_rows
    hour_rows = store.query_arrow("SELECT count() AS n FROM rollups_1h").to_pylist()[0]["n"]
    return {"events": loaded, "minute_rollup_rows": rows, "hour_rollup_rows": hour_rows,
            "seconds": round(time.perf_counter() - started, 1)}


def build_days(store: HotStore, end: datetime) -> dict:
    """Every day of the window copied up to the hour before ``end`` (that hour and the current one stay open)."""
    closed = end.replace(minute=0, second=0, microsecond=0, tzinfo=None) - timedelta(hours=1)
    day = (end - timedelta(days=8)).date()
    started, builds = time.perf_counter(), 0
    while day <= closed.date():
        day_rollups.build(store, day, closed)
        builds, day = builds + 1, day + timedelta(days=1)
    copy_rows = store.query_arrow("SELECT count() AS n FROM rollups_1h_by_day").to_pylist()[0]["n"]
    return {"days": builds, "copy_rows": copy_rows, "seconds": round(time.perf_counter() - started, 2)}


def widgets(start: datetime, end: datetime) -> dict[str, SpecInput]:
    desc = [{"field": "events", "direction": "desc"}]
    return {
        "timeseries_by_hour": SpecInput(metrics=["events"], start=start, end=end, granularity="hour", fill="auto"),
        "breakdown_by_country": SpecInput(metrics=["events"], start=start, end=end, dimensions=["country"],
                                          limit=100, order_by=desc),
        "top10_pages": SpecInput(metrics=["page_views"], start=start, end=end, dimensions=["page"], limit=10,
                                 order_by=[{"field": "page_views", "direction": "desc"}]),
        "unique_users_by_day": SpecInput(metrics=["unique_users"], start=start, end=end, granularity="day"),
    }


def _ms(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50": round(statistics.median(ordered) * 1000, 2),
            "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2)}


def measure(store: HotStore, now: datetime, samples: int) -> dict:
    old, new = QueryEngine(store, day_copies=False), QueryEngine(store)
    out: dict = {}
    for name in widgets(now, now):
        times: dict[str, list[float]] = {"old": [], "new": [], "scan_1h": [], "scan_copies": []}
        for k in range(samples):
            end = now - timedelta(minutes=k + 1)
            spec = build_spec(widgets(end - timedelta(days=7), end)[name], now=now)
            params = {"tenant": TENANT, "start": spec.start.replace(tzinfo=None), "end": spec.end.replace(tzinfo=None)}
            t0 = time.perf_counter()
            a = old.run(TENANT, spec, now)
            t1 = time.perf_counter()
            b = new.run(TENANT, spec, now)
            t2 = time.perf_counter()
            store.query_arrow(SCAN.replace("{table}", "rollups_1h"), params)
            t3 = time.perf_counter()
            relation = day_rollups.relation(store, spec.start, spec.end)
            assert relation is not None, "the window's days are built"
            store.query_arrow(SCAN.replace("{table}", relation[0]), {**params, **relation[1]})
            t4 = time.perf_counter()
            if a.rows != b.rows:
                raise AssertionError(f"{name}: the day copies answered differently from rollups_1h")
            for key, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                times[key].append(seconds)
        out[name] = {key: _ms(values) for key, values in times.items()}
        w = out[name]
        w["new_over_old_p50"] = round(w["new"]["p50"] / w["old"]["p50"], 2)
        w["new_over_its_scan_p50"] = round(w["new"]["p50"] / w["scan_copies"]["p50"], 2)
        print(f"   {name:22} old {w['old']}  new {w['new']}  scan 1h {w['scan_1h']}  scan copies "
              f"{w['scan_copies']}  new/old {w['new_over_old_p50']}", flush=True)
    return out


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_size(events: int, samples: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="bench-day-rollups-"))
    store = ClickHouseHotStore(f"chdb://{home}/chdb")
    try:
        migrate(store)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        print(f"== {events:,} events over 7 days (load average {load_average()})", flush=True)
        loaded = load(store, events, now)
        print(f"   loaded {loaded}", flush=True)
        built = build_days(store, now)
        print(f"   day copies built {built}", flush=True)
        before = load_average()
        result = {"load": loaded, "build": built, "load_average_before": before,
                  "widgets": measure(store, now, samples), "load_average_after": load_average()}
        return result
    finally:
        store.close()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", default="1500000,15000000", help="comma-separated sizes, run in turn")
    parser.add_argument("--samples", type=int, default=60, help="uncached questions per widget, engine and size")
    args = parser.parse_args()
    sizes = [int(s) for s in args.events.split(",")]
    runs = {str(n): run_size(n, args.samples) for n in sizes}
    base = runs[str(sizes[0])]["widgets"]
    curve = {name: {size: {"old": round(r["widgets"][name]["old"]["p50"] / base[name]["old"]["p50"], 2),
                           "new": round(r["widgets"][name]["new"]["p50"] / base[name]["new"]["p50"], 2)}
                    for size, r in runs.items()} for name in base}
    print("curve (p50 ÷ the first size's p50):")
    for name, points in curve.items():
        print(f"   {name:22} " + "  ".join(f"{size}: old {p['old']}× new {p['new']}×" for size, p in points.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                   "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                                   "samples": args.samples, "runs": runs, "curve": curve}, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
