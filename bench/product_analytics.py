"""Benchmark: product analytics (funnels, sessions, retention) against the engines' bare scan speed.

What it measures, uncached, through ``serving.analytics.engine.AnalyticsEngine`` (what the API calls):

* hot tier (embedded chDB, ``events_raw``): a 4-step funnel over 7 days (1-day window) and the 7-day
  session metrics over ``--hot-events`` events (default 10 M); beside them the bare scan of the same
  range (``count()`` and ``uniqExact(user_id)``), so the gap between scanning and answering is visible.
  The funnel four times, alternating run by run after checking that they answer the same: the packed walk
  over the funnel pieces of the closed hours (every hour ending more than an hour before now, built as the
  batch layer's restatement builds them with the session pieces; the build's time per hour is in
  ``session_pieces_build``) and the raw events of the open hours (``funnel_4_steps_7d``), the same walk over the
  raw events alone (``funnel_4_steps_7d_raw``), the packed walk over an array of times on the raw events
  (``funnel_4_steps_7d_times``, the code before) and the walk sorting every unit by event id
  (``funnel_4_steps_7d_sorted``, the code before that), all as ``POST /v1/funnels`` asks (no per-unit user ids
  unless needed); ``funnel_new_over_before`` (``funnel_4_steps_7d`` ÷ ``funnel_4_steps_7d_times``) and the other
  ``funnel_*_over_*`` are their ratios, and ``funnel_cpu_s`` the process's CPU time per answer (chDB's threads
  included), which a shared machine's load disturbs less than wall time.
  The session metrics twice in the same run: from the raw events alone (``session_metrics_7d_raw``, the
  code before session pieces) and from the session pieces of the closed hours (every hour ending more
  than an hour before now, built as the batch layer's restatement builds them; the build's time per hour
  is in ``session_pieces_build``) with the open hours raw (``session_metrics_7d``);
* lake (DuckDB over the archive's Delta table, hourly files as the archive writes them, in a temporary
  folder): a 90-day weekly retention grid and a 1-year funnel (14-day window) over ``--lake-events`` events
  spread over a year, with the bare scan beside them.

``x_bare_scan`` in the results: each answer as a multiple of the bare scan measured in the same run.

Events are generated inside the engines (ClickHouse ``numbers()``, DuckDB ``range()``) so that setting up
10 M events takes seconds: users with about 20 events each, a few minutes apart, the event names drawn
with fixed shares (page views, clicks, add to cart, checkout, purchase, scroll).

Usage: ``python -m bench.product_analytics [--hot-events 10000000] [--lake-events 10000000] [--repeat 3]
[--skip-lake]``.
Figures are printed and written to ``bench/results/product_analytics.json``. CPU-heavy: on a shared machine
run it with smaller numbers first.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from bench.memory import MemorySampler
from common import session_pieces
from common.events import EVENT_ARROW_SCHEMA
from common.hot_schema import migrate
from common.hot_store import ClickHouseHotStore
from common.lake_tables import ARCHIVE_TABLE, append_rows
from common.settings import REPO_ROOT, Settings
from serving.analytics import definitions as defs
from serving.analytics.engine import AnalyticsEngine

TENANT = "bench"
FUNNEL = [{"event": "page_view"}, {"event": "add_to_cart"}, {"event": "checkout"}, {"event": "purchase"}]
EVENTS_PER_USER = 20
# event name by hash % 100: 50 page_view, 15 click, 13 add_to_cart, 10 checkout, 5 purchase, 7 scroll
CH_EVENT = ("multiIf(h < 50, 'page_view', h < 65, 'click', h < 78, 'add_to_cart', h < 88, 'checkout', "
            "h < 93, 'purchase', 'scroll')")
DUCK_EVENT = ("CASE WHEN h < 50 THEN 'page_view' WHEN h < 65 THEN 'click' WHEN h < 78 THEN 'add_to_cart' "
              "WHEN h < 88 THEN 'checkout' WHEN h < 93 THEN 'purchase' ELSE 'scroll' END")


def fill_hot(store: ClickHouseHotStore, n: int, now: datetime) -> None:
    users = max(1, n // EVENTS_PER_USER)
    span = 7 * 86400 - 4 * 3600  # every event inside the last 7 days, clear of the hot horizon
    store.command(f"""
        INSERT INTO events_raw SETTINGS max_partitions_per_insert_block = 10000
        SELECT 'bench', {CH_EVENT}, ts, toString(number), concat('u', toString(u)), concat('/p', toString(h % 7)),
               ['US', 'DE', 'FR', 'JP'][h % 4 + 1], ['web', 'ios'][h % 2 + 1], 0, '', ts
        FROM (SELECT number, number % {users} AS u, cityHash64(number) % 100 AS h,
                     toDateTime64({{start:DateTime('UTC')}}, 3, 'UTC')
                       + toIntervalMillisecond((cityHash64(u) % {span}) * 1000 + intDiv(number, {users}) * 97000
                                               + cityHash64(number, 1) % 60000) AS ts
              FROM numbers({n}))""", {"start": (now - timedelta(days=7)).replace(tzinfo=None)})


def fill_lake(settings: Settings, n: int, end: datetime) -> None:
    """The year of events appended to the archive's Delta table (one commit per month of hours, each hour
    sorted as the hourly archive sorts it), so the lake's ``events`` view reads them through the table's log."""
    users = max(1, n // EVENTS_PER_USER)
    start = end - timedelta(days=365)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"""
        CREATE TABLE generated AS
        SELECT 'bench' AS tenant, {DUCK_EVENT} AS event, ts AS "timestamp", CAST(i AS VARCHAR) AS event_id,
               'u' || u AS user_id, '/p' || (h % 7) AS page, ['US', 'DE', 'FR', 'JP'][h % 4 + 1] AS country,
               ['web', 'ios'][h % 2 + 1] AS device, 0.0 AS revenue, '' AS properties, ts AS received_at,
               CAST(ts AS DATE) AS dt, CAST(hour(ts) AS INTEGER) AS hour
        FROM (SELECT i, u, h, $start + to_milliseconds(CAST(
                     (hash(u) % {365 * 86400 - 86400}) * 1000 + (i // {users}) * 97000 + hash(i, 1) % 60000
                     AS BIGINT)) AS ts
              FROM (SELECT i, i % {users} AS u, CAST(hash(i) % 100 AS BIGINT) AS h FROM range({n}) t(i)))""",
                {"start": start})
    schema = EVENT_ARROW_SCHEMA.append(pa.field("dt", pa.date32())).append(pa.field("hour", pa.int32()))
    month = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while month < end + timedelta(days=31):
        following = (month + timedelta(days=32)).replace(day=1)
        chunk = con.execute(
            'SELECT * FROM generated WHERE "timestamp" >= $a AND "timestamp" < $b '
            'ORDER BY dt, hour, tenant, event, "timestamp", event_id', {"a": month, "b": following}).to_arrow_table()
        if chunk.num_rows:
            append_rows(settings, ARCHIVE_TABLE, chunk.cast(schema), "bench", {"tenant": TENANT})
        month = following
    con.close()


def timed(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(runs), 3), "min_s": round(min(runs), 3)}


def alternating(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, dict[str, float]]:
    """``timed`` for several answers run in turn (a, b, a, b, …), so a change in the machine's load falls on
    all of them alike; also each answer's median CPU time of this process (chDB's threads included)."""
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            started, used = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - used)
    return {name: {"median_s": round(statistics.median(wall[name]), 3), "min_s": round(min(wall[name]), 3),
                   "cpu_median_s": round(statistics.median(cpu[name]), 3)} for name in fns}


def ratios(figures: dict[str, Any], bare: str) -> dict[str, float]:
    """Each answer's median time as a multiple of the bare scan's measured in the same run: on a shared
    machine the load moves the seconds, much less the ratios."""
    return {name: round(f["median_s"] / figures[bare]["median_s"], 2) for name, f in figures.items()
            if name not in (bare, "targets_s")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hot-events", type=int, default=10_000_000)
    parser.add_argument("--lake-events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-lake", action="store_true", help="the hot tier's half only")
    parser.add_argument("--funnel-only", action="store_true",
                        help="the hot tier's bare scan and funnels only (no session metrics, no lake)")
    parser.add_argument("--output", default=str(REPO_ROOT / "bench" / "results" / "product_analytics.json"))
    args = parser.parse_args()
    memory = MemorySampler().start()  # this process and what it starts (Spark, MinIO): in the results
    now = datetime.now(UTC).replace(microsecond=0)
    home = Path(tempfile.mkdtemp(prefix="bench-analytics-"))
    settings = Settings(home=home)
    store = ClickHouseHotStore(f"chdb://{home}/chdb")
    migrate(store)
    engine = AnalyticsEngine(store, settings, timeout_seconds=600)
    results: dict[str, Any] = {"machine": platform.platform(), "cpus": __import__("os").cpu_count(),
                               "hot_events": args.hot_events, "lake_events": args.lake_events, "repeat": args.repeat}

    started = time.perf_counter()
    fill_hot(store, args.hot_events, now)
    results["hot_fill_s"] = round(time.perf_counter() - started, 1)
    week = (now - timedelta(days=7), now)
    funnel = defs.funnel_spec({"steps": FUNNEL, "window": timedelta(days=1), "tier": "hot"}, *week)
    sessions = defs.sessions_spec({"tier": "hot"}, *week)
    scan_sql = ("SELECT count(), uniqExact(user_id) FROM events_raw WHERE tenant = 'bench' "
                "AND timestamp >= {s:DateTime64(3, 'UTC')} AND timestamp < {e:DateTime64(3, 'UTC')}")
    scan_params = {"s": week[0].replace(tzinfo=None), "e": week[1].replace(tzinfo=None)}
    results["session_pieces_build"] = build_pieces(store, now, settings.session_gap_minutes)
    results["session_pieces_build"]["funnel_hours_built"] = len(session_pieces.funnel_hours(
        store, funnel.start, funnel.end + funnel.window).hours)  # the funnel's hours read from its pieces
    load_before = __import__("os").getloadavg()
    engines = {"": engine,
               "_raw": AnalyticsEngine(store, settings, timeout_seconds=600, use_funnel_pieces=False),
               "_times": AnalyticsEngine(store, settings, timeout_seconds=600, use_funnel_pieces=False,
                                         funnel_on_packed=False),
               "_sorted": AnalyticsEngine(store, settings, timeout_seconds=600, packed_funnel=False)}
    answer = engines["_sorted"].funnel(TENANT, funnel, now).body
    for name, other in engines.items():
        if other.funnel(TENANT, funnel, now, units=False).body != answer:
            raise SystemExit(f"the funnel{name} walk's answer differs from the event-id walk's")

    def ask(asked: AnalyticsEngine) -> Callable[[], Any]:
        return lambda: asked.funnel(TENANT, funnel, now, units=False)

    funnels = alternating({"bare_scan_count_uniq": lambda: store.query_arrow(scan_sql, scan_params),
                           **{f"funnel_4_steps_7d{name}": ask(asked) for name, asked in engines.items()}},
                          args.repeat)
    results["hot"] = {name: {k: v for k, v in f.items() if k != "cpu_median_s"} for name, f in funnels.items()}
    results["hot"]["targets_s"] = {"funnel_4_steps_7d": 1.0}
    if not args.funnel_only:
        raw_engine = AnalyticsEngine(store, settings, timeout_seconds=600, use_session_pieces=False)
        from_pieces, from_raw = engine.sessions(TENANT, sessions, now), raw_engine.sessions(TENANT, sessions, now)
        if not from_pieces.pieces or from_pieces.body != from_raw.body:
            raise SystemExit("the session pieces' answer differs from the raw events' (or no pieces were read)")
        results["hot"]["session_metrics_7d_raw"] = timed(lambda: raw_engine.sessions(TENANT, sessions, now),
                                                         args.repeat)
        results["hot"]["session_metrics_7d"] = timed(lambda: engine.sessions(TENANT, sessions, now), args.repeat)
        results["hot"]["targets_s"]["session_metrics_7d"] = 0.5
        results["hot"]["session_metrics_new_over_raw"] = round(
            results["hot"]["session_metrics_7d"]["median_s"] / results["hot"]["session_metrics_7d_raw"]["median_s"],
            2)
    results["hot"]["x_bare_scan"] = ratios({k: v for k, v in results["hot"].items() if isinstance(v, dict)
                                            and "median_s" in v}, "bare_scan_count_uniq")
    results["hot"]["funnel_cpu_s"] = {name: f["cpu_median_s"] for name, f in funnels.items()}
    median = {name: f["median_s"] for name, f in funnels.items()}
    results["hot"]["funnel_new_over_before"] = round(median["funnel_4_steps_7d"] / median["funnel_4_steps_7d_times"], 2)
    for new, before in (("", "raw"), ("_raw", "times"), ("", "sorted")):
        results["hot"][f"funnel{new or '_pieces'}_over_{before}"] = round(
            median[f"funnel_4_steps_7d{new}"] / median[f"funnel_4_steps_7d_{before}"], 2)
    results["hot"]["load_average_before"] = load_before
    results["hot"]["load_average_after"] = __import__("os").getloadavg()
    store.close()
    if args.skip_lake or args.funnel_only:
        finish(results, memory, args.output)
        return

    started = time.perf_counter()
    fill_lake(settings, args.lake_events, now)
    results["lake_fill_s"] = round(time.perf_counter() - started, 1)
    year = (now - timedelta(days=365), now)
    quarter = (now - timedelta(days=90), now)
    retention = defs.retention_spec({"start_event": "page_view", "return_event": "purchase", "period": "week",
                                     "periods": 12, "tier": "lake"}, *quarter)
    long_funnel = defs.funnel_spec({"steps": FUNNEL, "tier": "lake"}, *year)

    def lake_scan() -> None:
        con = engine.lake_factory(settings)
        try:
            con.execute("SELECT count(*), count(DISTINCT user_id) FROM events WHERE tenant = 'bench' "
                        "AND \"timestamp\" >= $s AND \"timestamp\" < $e", {"s": year[0], "e": year[1]}).fetchall()
        finally:
            con.close()

    results["lake"] = {
        "bare_scan_count_distinct_1y": timed(lake_scan, args.repeat),
        "retention_weekly_90d": timed(lambda: engine.retention(TENANT, retention, now), args.repeat),
        "funnel_4_steps_1y": timed(lambda: engine.funnel(TENANT, long_funnel, now), args.repeat),
        "targets_s": {"retention_weekly_90d": 5.0, "funnel_4_steps_1y": 10.0},
    }
    results["lake"]["x_bare_scan"] = ratios(results["lake"], "bare_scan_count_distinct_1y")
    finish(results, memory, args.output)


def build_pieces(store: ClickHouseHotStore, now: datetime, gap_minutes: float) -> dict[str, Any]:
    """Session pieces of every hour ending more than an hour before ``now`` (the closed hours), as the batch
    layer's restatement builds them one hour at a time."""
    closed_through = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    epochs = store.query_arrow(
        "SELECT DISTINCT toUnixTimestamp(toStartOfHour(toDateTime(timestamp))) AS h FROM events_raw "
        "WHERE timestamp < {c:DateTime('UTC')} ORDER BY h", {"c": closed_through.replace(tzinfo=None)})["h"]
    hours = [datetime.fromtimestamp(int(h), UTC) for h in epochs.to_pylist()]
    started = time.perf_counter()
    for hour in hours:
        session_pieces.build(store, hour, gap_minutes)
    seconds = time.perf_counter() - started
    return {"hours": len(hours), "total_s": round(seconds, 1), "per_hour_s": round(seconds / max(len(hours), 1), 3)}


def finish(results: dict[str, Any], memory: MemorySampler, output: str) -> None:
    memory.stop()
    results["memory"] = memory.report()
    results["load_average"] = __import__("os").getloadavg()
    print(json.dumps(results, indent=2))
    Path(output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
