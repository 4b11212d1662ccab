"""Benchmark: the 7-day dashboard widgets from rollups_1h alone (old), its day copies' full rows (copies), the copies'
shaped rows as the previous default read them (before), read whole at every question (shapes), and with the builds'
shaped part kept per process while the same builds are read (kept, the default: ``serving.query.kept_pieces``), side
by side.

In one process over embedded chDB (the hot tier's engine, no services), for each ``--events`` size in turn: a fresh
hot tier, the dashboard benchmark's synthetic events (``bench.dashboard_latency.synthetic_events``: one tenant, 7
days ending now) written as the stream writes their rollups (``rollups_1m_ingest`` → ``rollups_1m``, ``rollups_1h``)
— drawn in Python, or with ``--in-engine`` inside the engine (``GENERATE``: the same distributions, the same minute
rollups through the same materialized views, at about the same speed, without holding 10 M events of a 12-hour
slice as Python arrays at 150 M) —, then every day's
closed hours copied (``common.day_rollups.build``, as the batch layer does when it restates an hour: the current day
up to the hour before now, its later hours stay open), with the copy step's cost of the shaped rows beside the full
rows' (``--no-copy-cost`` skips that second copy). Then the widgets of the dashboard benchmark (events per hour,
events by country, top 10 pages by page views) and a day series of unique users, uncached: each sample moves the
7-day window back one minute, and runs the engines (``--engines``), the valid builds' look-up alone (kept per process,
the default, and read from the marks, the previous path), and the engine's bare scan (``count()``, ``sum(events)``)
of the rows each reads (rollups_1h; the copies' full rows; the shape the default engine picks), alternately, so load
on the machine hits all alike; the load average is recorded beside each widget, the process's peak resident memory
and the hot tier's disk per size. Answers are compared on every sample (they must be equal).

``before`` reads the marks before every question and today's built hours as hour rows (``QueryEngine(kept_builds=
False, reach_rows=False)``); both read the shaped rows from the same table (migration 020's granules).

Usage: ``python -m bench.day_rollups [--events 1500000,15000000] [--samples 60]
[--engines old,copies,before,shapes,kept]
[--in-engine] [--no-copy-cost] [--out FILE]``; figures printed and written to ``bench/results/day_rollups.json``,
with the curve (each engine's p50 at every size ÷ its p50 at the first). Loading millions of events is heavy: run it
under the integration lock on a shared machine (docs/benchmarks.md).
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

from bench.dashboard_latency import (
    COUNTRIES,
    DEVICES,
    EVENT_WEIGHTS,
    EVENTS,
    PAGES,
    build_closed_days,
    synthetic_events,
)
from common import day_rollups
from common.hot_schema import migrate
from common.hot_store import ClickHouseHotStore, HotStore
from common.rollups import minute_rollups
from common.sql_files import sql_sections
from serving.query.engine import QueryEngine, engine_shape
from serving.query.spec import SpecInput, build_spec
from serving.query.sql_compile import compile_segment
from serving.query.tier_routing import plan

# the shaped rows with the table's default granules (8,192 rows, up to 10 MiB), as before migration 020: the default
# engine's own statement is run on both, alternately (``granules`` in the figures)
DEFAULT_GRANULES = "rollups_1h_by_day_shapes_default_granules"

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


def _choice(values: np.ndarray, weights: list[float], seed: int) -> str:
    """SQL picking one of ``values`` (the generator's constants) with ``weights``, from the row's draw ``u<seed>``."""
    edges = [*np.cumsum(weights)[:-1], 2.0]
    return (f"arrayElement([{', '.join(repr(str(v)) for v in values)}], "
            f"arrayFirstIndex(e -> u{seed} < e, [{', '.join(f'{e:.6f}' for e in edges)}]))")


def _ranked(values: np.ndarray, exponent: float, seed: int) -> str:
    """SQL drawing one of ``values`` by a Zipf-like rank (P(k) ~ k^-exponent, the largest rank for the tail), as
    ``numpy``'s ``zipf`` does for the Python generator."""
    return (f"arrayElement([{', '.join(repr(str(v)) for v in values)}], "
            f"toUInt32(least(floor(pow(greatest(u{seed}, 1e-12), {-1 / (exponent - 1):.6f})), {values.size})))")


# The dashboard benchmark's synthetic events (bench.dashboard_latency.synthetic_events: daily rhythm, Zipf pages and
# countries, 50k users), drawn inside the engine and grouped into minute rollups exactly as common.rollups does
# (per tenant, event, minute, country, device, page: count, revenue, the distinct user ids), then inserted into
# rollups_1m_ingest, so the materialized views build rollups_1m and rollups_1h as they do from the stream's inserts.
GENERATE = """
INSERT INTO rollups_1m_ingest
SELECT tenant, event, minute, country, device, page, count() AS events, sum(revenue) AS revenue,
       groupUniqArray(user_id) AS user_ids
FROM (
    SELECT {tenant:String} AS tenant, toStartOfMinute(toDateTime(t, 'UTC')) AS minute, EVENT AS event,
           COUNTRY AS country, DEVICE AS device, PAGE AS page,
           if(event = 'purchase', round(-20 * (ln(greatest(u5, 1e-12)) + ln(greatest(u6, 1e-12))), 2), 0.0) AS revenue,
           concat('u', toString(rand(7) % 50000)) AS user_id
    FROM (
        SELECT {start:UInt32} + c * {seconds:UInt32} AS t, randCanonical(1) AS u1, randCanonical(2) AS u2,
               randCanonical(3) AS u3, randCanonical(4) AS u4, randCanonical(5) AS u5, randCanonical(6) AS u6
        FROM (SELECT randCanonical(0) AS c, randCanonical(8) AS keep FROM numbers({candidates:UInt64}))
        WHERE keep < 0.55 + 0.45 * sin((((({start:UInt32} + c * {seconds:UInt32}) % 86400) / 3600) - 8) / 24 * 2 * pi())
        LIMIT {n:UInt64}
    )
)
GROUP BY tenant, event, minute, country, device, page
"""


def generate(store: HotStore, total: int, end: datetime, slice_hours: int = 12) -> dict:
    """``load``'s events and rollups, drawn inside the engine (``GENERATE``): no slice of events is held in Python
    (10 M events a 12-hour slice at 150 M); the rows are those the stream's inserts make."""
    sql = (GENERATE.replace("EVENT AS", _choice(EVENTS, list(EVENT_WEIGHTS), 1) + " AS")
           .replace("COUNTRY AS", _ranked(COUNTRIES, 1.6, 2) + " AS")
           .replace("DEVICE AS", _choice(DEVICES, [0.5, 0.42, 0.08], 3) + " AS")
           .replace("PAGE AS", _ranked(PAGES, 1.3, 4) + " AS"))
    slices = 7 * 24 // slice_hours + 1
    started = time.perf_counter()
    for k in range(slices):
        start = end - timedelta(days=7, hours=slice_hours) + timedelta(hours=k * slice_hours)
        n = total // (slices - 1)
        store.command(sql, {"tenant": TENANT, "start": int(start.timestamp()), "seconds": slice_hours * 3600,
                            "candidates": 2 * n, "n": n})
    counts = store.query_arrow("SELECT (SELECT sum(events) FROM rollups_1m) AS events, (SELECT count() FROM "
                               "rollups_1m) AS m, (SELECT count() FROM rollups_1h) AS h").to_pylist()[0]
    return {"events": int(counts["events"]), "minute_rollup_rows": int(counts["m"]),
            "hour_rollup_rows": int(counts["h"]), "seconds": round(time.perf_counter() - started, 1),
            "generated": "in the engine"}


def build_days(store: HotStore, end: datetime, copy_cost: bool = True) -> dict:
    """Every day of the window copied up to the hour before ``end`` (that hour and the current one stay open); then
    the batch layer's cost of the shapes: each day's copy step again into a scratch build, the full rows and the
    shaped rows timed apart (the scratch builds dropped after)."""
    closed = end.replace(minute=0, second=0, microsecond=0, tzinfo=None) - timedelta(hours=1)
    first = (end - timedelta(days=8)).date()
    copied = build_closed_days(store, end)
    builds, seconds = copied["days"], copied["seconds"]
    copy_rows = store.query_arrow("SELECT count() AS n FROM rollups_1h_by_day").to_pylist()[0]["n"]
    shape_rows = store.query_arrow("SELECT count() AS n FROM rollups_1h_by_day_shapes").to_pylist()[0]["n"]
    sections = sql_sections("clickhouse/queries/day_rollups.sql")
    spent = {"full_rows": 0.0, "shaped_rows": 0.0}
    for k in range(builds if copy_cost else 0):
        start = datetime.combine(first + timedelta(days=k), datetime.min.time())
        t0 = time.perf_counter()
        through = min(closed, start + timedelta(days=1))
        store.command(sections["copy"], {"build": k + 1, "day_start": start, "through": through})
        t1 = time.perf_counter()
        store.command(day_rollups.shape_sql(), {"build": k + 1})
        t2 = time.perf_counter()
        spent["full_rows"] += t1 - t0
        spent["shaped_rows"] += t2 - t1
        for table in day_rollups.TABLES:
            store.command(f"ALTER TABLE {table} DROP PARTITION {{b:UInt64}}", {"b": k + 1})
    return {"days": builds, "copy_rows": copy_rows, "shape_rows": shape_rows, "seconds": seconds,
            "copy_step_seconds": {key: round(v, 2) for key, v in spent.items()},
            "shapes_over_full_rows": round(spent["shaped_rows"] / spent["full_rows"], 2) if copy_cost else None}


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


# rollups_1h alone; the day copies' full rows; their shaped rows as the previous default read them (the marks read
# before every question, today's built hours as hour rows); their shaped rows (the default: the valid builds kept
# while the marks do not change, today's built hours as one day row per key), read whole at every question; the
# default: the builds' shaped part kept per process while it is read (serving.query.kept_pieces), the rest read now
ENGINES = ("old", "copies", "before", "shapes", "kept")


def _engines(store: HotStore) -> dict[str, QueryEngine]:
    return {"old": QueryEngine(store, day_copies=False), "copies": QueryEngine(store, day_shapes=False),
            "before": QueryEngine(store, kept_builds=False, reach_rows=False),
            "shapes": QueryEngine(store, keep_pieces=False), "kept": QueryEngine(store)}


def _over(w: dict, a: str, b: str) -> float | None:
    return round(w[a]["p50"] / w[b]["p50"], 2) if a in w and b in w else None


def measure(store: HotStore, now: datetime, samples: int, engines_run: tuple[str, ...] = ENGINES) -> dict:
    """Per widget: the engines and the engine's bare scans of the rows each reads, alternately per sample."""
    engines = _engines(store)
    store.command(f"CREATE TABLE {DEFAULT_GRANULES} AS rollups_1h_by_day_shapes ENGINE = MergeTree PARTITION BY build "
                  "ORDER BY (tenant, shape, grain, event, hour, country, device, page)")
    store.command(f"INSERT INTO {DEFAULT_GRANULES} SELECT * FROM rollups_1h_by_day_shapes "
                  "SETTINGS max_partitions_per_insert_block = 0")
    out: dict = {}
    for name in widgets(now, now):
        times: dict[str, list[float]] = {key: [] for key in (*engines_run, "lookup", "lookup_read", "scan_1h",
                                                             "scan_copies", "scan_shape", "sql_granules_256k",
                                                             "sql_granules_default")}
        structure = ""
        load_before = load_average()
        pieces = engines["kept"].kept_pieces
        assert pieces is not None
        hits, misses = pieces.hits, pieces.misses
        misses_s: list[float] = []
        for k in range(samples):
            end = now - timedelta(minutes=k + 1)
            spec = build_spec(widgets(end - timedelta(days=7), end)[name], now=now)
            params = {"tenant": TENANT, "start": spec.start.replace(tzinfo=None), "end": spec.end.replace(tzinfo=None)}
            answers = []
            for engine in engines_run:
                missed = pieces.misses
                t0 = time.perf_counter()
                answers.append(engines[engine].run(TENANT, spec, now).rows)
                times[engine].append(time.perf_counter() - t0)
                if pieces.misses > missed:  # the questions that read the builds' part (once an hour)
                    misses_s.append(times[engine][-1])
            # the engine's fixed look-up of the valid builds: kept (the default), and read from the marks
            for key, kept in (("lookup", True), ("lookup_read", False)):
                t0 = time.perf_counter()
                copies = day_rollups.read(store, spec.start, spec.end, kept=kept)
                times[key].append(time.perf_counter() - t0)
            shaped = day_rollups.read(store, spec.start, spec.end, *engine_shape(spec))
            assert copies is not None and shaped is not None, "the window's days are built"
            structure = f"{shaped.structure} ({shaped.day_rows} days as day rows)"
            for key, table, extra in (("scan_1h", "rollups_1h", {}), ("scan_copies", copies.sql, copies.params),
                                      ("scan_shape", shaped.sql, shaped.params)):
                t0 = time.perf_counter()
                store.query_arrow(SCAN.replace("{table}", table), {**params, **extra})
                times[key].append(time.perf_counter() - t0)
            segment = plan(spec, now, engines["shapes"].horizons)[0]
            sql, sql_params = compile_segment(spec, segment, TENANT, whole=True, relation=(shaped.sql, shaped.params))
            granule_answers = []
            on_default = sql.replace("FROM rollups_1h_by_day_shapes\n", f"FROM {DEFAULT_GRANULES}\n")
            assert on_default != sql, "the statement reads the shaped rows"
            for key, statement in (("sql_granules_256k", sql), ("sql_granules_default", on_default)):
                t0 = time.perf_counter()
                granule_answers.append(store.query_arrow(statement, sql_params).to_pylist())
                times[key].append(time.perf_counter() - t0)
            if granule_answers[0] != granule_answers[1]:
                raise AssertionError(f"{name}: the shaped rows answered differently with the default granules")
            if any(a != answers[0] for a in answers[1:]):
                raise AssertionError(f"{name}: the engines answered differently ({', '.join(engines_run)})")
        out[name] = {key: _ms(values) for key, values in times.items()}
        w = out[name]
        w["structure"] = structure
        w["kept_parts"] = {"hits": pieces.hits - hits, "misses": pieces.misses - misses, "rows": pieces.rows,
                           "miss_ms": [round(t * 1000, 2) for t in misses_s]}
        w["rows_read"] = {key: store.query_arrow(SCAN.replace("{table}", rel.sql), {**params, **rel.params})
                          .to_pylist()[0]["rows"] for key, rel in (("copies", copies), ("shapes", shaped))}
        w["load_average"] = {"before": load_before, "after": load_average()}
        w["ratios_p50"] = {"kept_over_shapes": _over(w, "kept", "shapes"),
                           "kept_over_its_scan": _over(w, "kept", "scan_shape"),
                           "shapes_over_before": _over(w, "shapes", "before"),
                           "shapes_over_old": _over(w, "shapes", "old"),
                           "shapes_over_copies": _over(w, "shapes", "copies"),
                           "shapes_over_its_scan": _over(w, "shapes", "scan_shape"),
                           "before_over_its_scan": _over(w, "before", "scan_shape"),
                           "granules_256k_over_default": _over(w, "sql_granules_256k", "sql_granules_default")}
        print(f"   {name:22} " + "  ".join(f"{e} {w[e]}" for e in engines_run) + f"  kept parts {w['kept_parts']}"
              f"  [{structure}; rows "
              f"{w['rows_read']}]  look-up kept {w['lookup']} read {w['lookup_read']}  scans: 1h {w['scan_1h']} "
              f"copies {w['scan_copies']} shape {w['scan_shape']}  its SQL: granules 256 KiB {w['sql_granules_256k']} "
              f"default {w['sql_granules_default']}  p50 ratios {w['ratios_p50']}  load "
              f"{w['load_average']}", flush=True)
    return out


def resident_mb() -> int:
    """This process's peak resident memory (the engine's too: chDB runs in it)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_size(events: int, samples: int, engines_run: tuple[str, ...] = ENGINES, in_engine: bool = False,
             copy_cost: bool = True) -> dict:
    home = Path(tempfile.mkdtemp(prefix="bench-day-rollups-"))
    store = ClickHouseHotStore(f"chdb://{home}/chdb")
    try:
        migrate(store)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        print(f"== {events:,} events over 7 days (load average {load_average()})", flush=True)
        loaded = generate(store, events, now) if in_engine else load(store, events, now)
        loaded["resident_mb"] = resident_mb()
        print(f"   loaded {loaded}", flush=True)
        built = build_days(store, now, copy_cost)
        print(f"   day copies built {built}", flush=True)
        before = load_average()
        result = {"load": loaded, "build": built, "load_average_before": before,
                  "widgets": measure(store, now, samples, engines_run), "load_average_after": load_average(),
                  "disk_mb": round(sum(f.stat().st_size for f in home.rglob("*") if f.is_file()) / 2**20),
                  "resident_mb": resident_mb()}
        return result
    finally:
        store.close()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", default="1500000,15000000", help="comma-separated sizes, run in turn")
    parser.add_argument("--samples", type=int, default=60, help="uncached questions per widget, engine and size")
    parser.add_argument("--out", default=str(RESULTS), help="where the figures go (JSON)")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help=f"engines side by side (of {', '.join(ENGINES)}); 'old' and 'copies' take seconds a "
                             "question at 150 M events")
    parser.add_argument("--in-engine", action="store_true",
                        help="draw the events inside the engine (no Python arrays of a slice's events: 150 M events)")
    parser.add_argument("--no-copy-cost", action="store_true",
                        help="skip timing the copy step's full and shaped rows apart (a second copy of every day)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.events.split(",")]
    engines_run = tuple(e for e in ENGINES if e in args.engines.split(","))
    runs = {str(n): run_size(n, args.samples, engines_run, args.in_engine, not args.no_copy_cost) for n in sizes}
    base = runs[str(sizes[0])]["widgets"]
    curve = {name: {size: {**{e: {"p50_ms": r["widgets"][name][e]["p50"], "p99_ms": r["widgets"][name][e]["p99"],
                                  "over_first": round(r["widgets"][name][e]["p50"] / base[name][e]["p50"], 2)}
                              for e in (*engines_run, "scan_shape", "lookup", "lookup_read")},
                           "load_average": r["widgets"][name]["load_average"]["after"]}
                    for size, r in runs.items()} for name in base}
    print("curve (p50 ms, and ÷ the first size's p50; scan_shape: the engine's bare scan of the rows the shapes read):")
    for name, points in curve.items():
        print(f"   {name:22} " + "  ".join(
            f"{size}: " + " ".join(f"{e} {p[e]['p50_ms']} ({p[e]['over_first']}×)"
                                   for e in (*engines_run, "scan_shape")) + f" load {p['load_average']}"
            for size, p in points.items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                   "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                                   "samples": args.samples, "engines": engines_run,
                                   "generated": "in the engine" if args.in_engine else "in Python",
                                   "runs": runs, "curve": curve}, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
