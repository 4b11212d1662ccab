"""Benchmark (not a test): queries over the tiers — a 1-year aggregate over the cold tier, and dashboard
latency through the API for 7-day, 90-day, 1-year and 7-year ranges.

Why: the tiers trade storage cost for query cost. This measures what a data scientist's year-long
aggregate over cold Parquet costs with DuckDB, and what a dashboard waits for when its range reaches
into the warm and cold tiers, on a history shaped like production after seven years.

1. History (numpy/pyarrow, seeded per day, not measured; own home ``.lakehouse/bench-tiers``, kept
   between runs unless ``--fresh``), laid the way the pipeline leaves it: cold raw events of the year
   that the tier policy keeps cold (366-730 days old: one commit per day of the cold events' Delta table,
   written by the tier mover's own ``publish_day``), cold daily rollups for 7 years (one commit per day of
   their table), warm hourly rollups for the last year (the warm Delta table, one commit per day) and,
   through the API's hot node, the hot tier for the last 91 days (minute rows for the last 7 days,
   hour-stamped rows before, which the materialized views carry into ``rollups_1h``). Every tier is rolled
   up from the same per-day events, so the tiers agree with each other and with the generator's own bookkeeping.
2. Cold 1-year aggregate (``storage_tiers.lake.sql``): events, revenue and distinct users per country
   per month for one tenant, from the ``events`` view (raw) and from ``rollups_daily``; first run in a
   new session with this bench's files evicted from the page cache (``posix_fadvise``, other processes'
   cache untouched), then the median of 5 warm runs; rows in the range / seconds; files read (EXPLAIN
   ANALYZE). Both answers must be equal. The tables are checkpointed after the history is laid, as the
   maintenance asset leaves them.
3. Dashboards through the API (Redis + the API/hot node on ports 26400-26499/28400-28499; no Kafka):
   ``POST /v1/query`` day series (events, revenue, unique users) and a breakdown by country, for each
   range: ``--requests`` uncached requests (each with its own ``to`` so it misses the cache, checked on
   ``X-Cache``; at least 3, fewer than ``--requests`` once a range has used ``--cell-seconds``), then
   the same number of cached ones; p50/p99 and the tiers that answered. The bench API's query timeout is
   raised to 300 s so the slowest ranges are measured, not cut; how many answers took longer than the
   default 30 s (``LAKEHOUSE_QUERY_TIMEOUT_SECONDS``, a 504) is reported.
4. Checks: the API's 7-year series against the generator's bookkeeping (every complete day: events and
   revenue exact, unique users exact in the lake, within 2 % from the hot tier's ``uniq``) and against a
   direct DuckDB read of the cold daily rollups' live files, taken from the table's log (no views).

``--lake-only`` lays the lake tiers only (no hot tier, no services started) and measures step 2 alone, written
to ``bench/results/tier_queries_lake.json``: the lake's figures without the API's.

Usage: ``python -m bench.tier_queries [--events-per-day 50000] [--fresh] [--requests 30] [--cell-seconds 120]
[--lake-only]``
(the history, about 1.6 GiB with the hot tier, is kept for the next run of the same day unless it is
over 1 GiB at the end and ``--keep`` is not given).
Figures are printed and written to ``bench/results/tier_queries.json`` (``tier_queries_lake.json`` with
``--lake-only``; another ``--events-per-day`` than 50,000 adds ``_<n>_per_day`` to the name).

Long ranges, old vs new (step 2b, also with ``--lake-only``): the 90-day, 1-year and 7-year day series and
breakdowns by country (ranges ending at today's midnight) answered in process, alternately, by three
``QueryEngine``s: **old**, the daily rollups (series) or the warm hourly + daily rollups (totals); **days**, the day
sketches one file per day (the layout before the months: a copy in ``lake_day_layout``); **months** (new), the day
sketches with every complete month compacted into one file (``LAKEHOUSE_QUERY_DAY_SKETCHES``); no hot tier (its
horizons 0: the lake answers the whole range), each beside DuckDB's bare scan of the files it reads; answers checked
(series equal, totals' events equal and unique users within the stated bound of the exact count; days and months
identical). The 1-year cold aggregate is also run by DuckDB alone on the same files (the same statement over
``read_parquet`` of them, and a bare scan of the columns it reads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench.memory import MemorySampler
from common.events import EVENT_ARROW_SCHEMA
from common.lake_tables import DAY_SKETCHES_TABLE, ROLLUPS_HOURLY_TABLE, append_rows, open_table
from common.rollups import ROLLUP_KEYS, ROLLUP_SCHEMA, minute_rollups
from common.settings import REPO_ROOT, Settings

RESULTS = Path(__file__).resolve().parent / "results" / "tier_queries.json"
RESULTS_LAKE = RESULTS.with_name("tier_queries_lake.json")
HOME = REPO_ROOT / ".lakehouse" / "bench-tiers"
BENCH_ENV = {
    "LAKEHOUSE_HOME": str(HOME),
    "LAKEHOUSE_LAKE_URI": "",
    "LAKEHOUSE_KAFKA_BOOTSTRAP": "localhost:26492",  # never started: queries need no Kafka
    "LAKEHOUSE_S3_ENDPOINT": "http://127.0.0.1:26490",  # never started: the lake is a local folder
    "LAKEHOUSE_REDIS_URL": "redis://127.0.0.1:26479/0",
    "LAKEHOUSE_API_PORT": "28400",
    "LAKEHOUSE_HOT_NODE_URL": "grpc://127.0.0.1:28415",
    # long enough to measure the slowest ranges; how many would pass the default 30 s is reported
    "LAKEHOUSE_QUERY_TIMEOUT_SECONDS": "300",
}
DEFAULT_TIMEOUT_S = 30.0
SEED = 5
RUN_ID = "bench-tier-queries"
TENANT = "acme"  # the tenant every measured query reads (the largest)

# Cardinalities of the synthetic history (weights are relative).
TENANTS = (("acme", 60, 200_000), ("globex", 30, 80_000), ("initech", 10, 20_000))  # name, share, user pool
EVENTS = (("page_view", 62), ("click", 25), ("add_to_cart", 7), ("purchase", 4), ("signup", 2))
COUNTRIES = (("US", 30), ("DE", 8), ("GB", 8), ("IN", 8), ("FR", 6), ("BR", 5), ("JP", 5), ("CA", 4), ("ES", 3),
             ("IT", 3), ("MX", 3), ("NL", 2), ("AU", 2), ("KR", 2), ("SE", 2), ("PL", 2), ("TR", 2), ("ID", 2),
             ("ZA", 1), ("AR", 1))
DEVICES = (("mobile", 55), ("desktop", 40), ("tablet", 5))
PAGES = ("/", "/pricing", "/signup", "/login", "/cart", "/checkout", "/docs", "/blog",
         *(f"/product/{i}" for i in range(42)))  # 50 pages, Zipf-distributed (page k has weight 1/k)
# Share of a day's events per UTC hour (a diurnal curve peaking mid-afternoon UTC) and per weekday.
DIURNAL = 1.0 + 0.8 * np.sin((np.arange(24) - 9) / 24 * 2 * np.pi)
WEEKDAY = (1.05, 1.08, 1.08, 1.05, 1.0, 0.85, 0.8)
GROWTH_PER_YEAR = 1.25  # traffic grows 25 % a year; --events-per-day is the rate of the cold raw year
USER_POWER = 3.0  # user index = pool * U**3: a power law, a few heavy users and a long tail

COLD_RAW_AGES = (366, 730)  # days old: the year the tier policy keeps in cold/events (warm holds 365 days)
WARM_DAYS = 366
HOT_DAYS = 91
HOT_MINUTE_DAYS = 7
HISTORY_DAYS = 2557  # 7y as the tier policy counts it (365.25 days a year)
RANGES = (("7d", 7), ("90d", 90), ("1y", 365), ("7y", 7 * 365))
KEYS = list(ROLLUP_KEYS)
HOURLY_SCHEMA = pa.schema([*((k, pa.string()) for k in KEYS), ("hour", pa.timestamp("us", tz="UTC")),
                           ("events", pa.int64()), ("revenue", pa.float64()), ("user_ids", pa.list_(pa.string()))])


def _weights(table: tuple[tuple[Any, ...], ...]) -> np.ndarray:
    w = np.asarray([row[1] for row in table], dtype=float)
    return w / w.sum()


def _labels(names: tuple[str, ...] | list[str], index: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), pa.array(list(names))).cast(pa.string())


# ------------------------------------------------------------------------------------------ history


@dataclass
class History:
    """A seeded synthetic clickstream, one day at a time: the same day always yields the same events."""

    events_per_day: int
    today: date
    now: datetime  # nothing later than this exists

    def size(self, day: date) -> int:
        rng = np.random.default_rng([SEED, day.toordinal(), 1])
        age = (self.today - day).days
        middle_of_cold_year = sum(COLD_RAW_AGES) / 2
        rate = self.events_per_day * GROWTH_PER_YEAR ** ((middle_of_cold_year - age) / 365)
        return max(0, int(rate * WEEKDAY[day.weekday()] * rng.normal(1.0, 0.05)))

    def day(self, day: date, raw: bool = False) -> pa.Table:
        """The events of ``day`` (columns of EVENT_ARROW_SCHEMA; ``raw=False`` leaves out the columns no
        rollup needs: event_id, properties, received_at), sorted by time."""
        n = self.size(day)
        rng = np.random.default_rng([SEED, day.toordinal(), 2])
        start_ms = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
        hours = rng.choice(24, size=n, p=DIURNAL / DIURNAL.sum())
        ts_ms = np.sort(start_ms + hours * 3_600_000 + rng.integers(0, 3_600_000, size=n))
        keep = ts_ms < int(self.now.timestamp() * 1000)
        ts_ms, n = ts_ms[keep], int(keep.sum())
        tenant = rng.choice(len(TENANTS), size=n, p=_weights(TENANTS))
        pool = np.asarray([t[2] for t in TENANTS])[tenant]
        user = (pool * rng.random(n) ** USER_POWER).astype(np.int64)
        event = rng.choice(len(EVENTS), size=n, p=_weights(EVENTS))
        purchase = event == [e[0] for e in EVENTS].index("purchase")
        revenue = np.where(purchase, np.round(rng.lognormal(np.log(40), 0.8, size=n), 2), 0.0)
        page_w = 1.0 / np.arange(1, len(PAGES) + 1)
        columns: dict[str, pa.Array] = {
            "tenant": _labels([t[0] for t in TENANTS], tenant),
            "event": _labels([e[0] for e in EVENTS], event),
            "timestamp": pa.array(ts_ms, pa.timestamp("ms", tz="UTC")),
            "user_id": pc.cast(pa.array(user), pa.string()),
            "page": _labels(PAGES, rng.choice(len(PAGES), size=n, p=page_w / page_w.sum())),
            "country": _labels([c[0] for c in COUNTRIES], rng.choice(len(COUNTRIES), size=n, p=_weights(COUNTRIES))),
            "device": _labels([d[0] for d in DEVICES], rng.choice(len(DEVICES), size=n, p=_weights(DEVICES))),
            "revenue": pa.array(revenue),
        }
        if not raw:
            return pa.table(columns)
        # UUID-shaped ids without a Python loop: 32 random hex digits per event, cut by Arrow
        hexes = pa.py_buffer(rng.bytes(16 * n).hex().encode())
        ids = pa.Array.from_buffers(pa.binary(32), n, [None, hexes]).cast(pa.binary()).cast(pa.string())
        ids = pc.binary_join_element_wise(pc.utf8_slice_codeunits(ids, 0, 8), pc.utf8_slice_codeunits(ids, 8, 12),
                                          pc.utf8_slice_codeunits(ids, 12, 16), pc.utf8_slice_codeunits(ids, 16, 20),
                                          pc.utf8_slice_codeunits(ids, 20, 32), "-")
        columns |= {"event_id": ids, "properties": pa.repeat(pa.scalar("{}"), n),
                    "received_at": pa.array(ts_ms + rng.integers(5, 2_000, size=n), pa.timestamp("ms", tz="UTC"))}
        return pa.table({name: columns[name] for name in EVENT_ARROW_SCHEMA.names}).cast(EVENT_ARROW_SCHEMA)


def rollup(events: pa.Table, unit: str) -> pa.Table:
    """Per tenant x event x country x device x page x ``unit`` (hour | day): events, revenue, distinct users,
    in the shape of the warm hourly (``hour``) and cold daily (``day``) files."""
    at = pc.floor_temporal(events["timestamp"], unit=unit).cast(pa.timestamp("us", tz="UTC"))
    keyed = pa.table({**{k: events[k] for k in KEYS}, unit: at, "revenue": events["revenue"],
                      "user_id": events["user_id"]})
    g = keyed.group_by([*KEYS, unit], use_threads=False).aggregate(
        [("revenue", "count"), ("revenue", "sum"), ("user_id", "distinct")])
    table = pa.table({**{k: g[k] for k in KEYS}, unit: g[unit], "events": g["revenue_count"].cast(pa.int64()),
                      "revenue": g["revenue_sum"], "user_ids": g["user_id_distinct"]})
    return table.sort_by([(unit, "ascending"), *((k, "ascending") for k in KEYS)])


def hot_rows(events: pa.Table, minutes: bool) -> pa.Table:
    """Rows of ``rollups_1m_ingest``: per minute (the stream's rows), or per hour with ``minute`` = the
    hour's start (what ``rollups_1h`` keeps once the minute rows left the hot tier)."""
    if minutes:
        return minute_rollups(events)
    hourly = rollup(events, "hour")
    return pa.table({**{k: hourly[k] for k in KEYS}, "minute": hourly["hour"], "events": hourly["events"],
                     "revenue": hourly["revenue"], "user_ids": hourly["user_ids"]}).select(
        ROLLUP_SCHEMA.names).cast(ROLLUP_SCHEMA)


@dataclass
class Laid:
    """What was written where, and the ground truth kept on the way (tenant TENANT, per day)."""

    raw_rows: int = 0
    raw_bytes: int = 0
    raw_days: int = 0
    warm_rows: int = 0
    warm_files: int = 0
    warm_bytes: int = 0
    daily_rows: int = 0
    daily_bytes: int = 0
    daily_days: int = 0
    sketch_rows: int = 0
    sketch_bytes: int = 0
    hot_rows: int = 0
    hot_minute_rows: int = 0
    events_total: int = 0
    seconds: float = 0.0
    # day (ISO) -> [events, revenue, distinct users] of TENANT: the generator's own bookkeeping
    truth: dict[str, list[float]] = field(default_factory=dict)


def lay_history(settings: Settings, history: History, hot: Any | None) -> Laid:
    """Write every tier's files (and hot rows when ``hot`` is given) for ``HISTORY_DAYS`` days up to now."""
    from common.lake_tables import COLD_EVENTS_TABLE, COLD_ROLLUPS_DAILY_TABLE
    from storage_tiers.tiers.cold_files import EVENTS_SORT, _hour_counts, publish_day
    from storage_tiers.tiers.day_sketches import sketch_rows

    laid = Laid()
    started = time.perf_counter()
    hot_batch: list[pa.Table] = []
    sketch_batch: list[pa.Table] = []
    daily_batch: list[pa.Table] = []
    first = history.today - timedelta(days=HISTORY_DAYS)
    for offset in range(HISTORY_DAYS + 1):
        day = first + timedelta(days=offset)
        age = (history.today - day).days
        is_raw = COLD_RAW_AGES[0] <= age <= COLD_RAW_AGES[1]
        events = history.day(day, raw=is_raw)
        laid.events_total += events.num_rows
        mine = events.filter(pc.equal(events["tenant"], TENANT))
        laid.truth[day.isoformat()] = [mine.num_rows, float(pc.sum(mine["revenue"]).as_py() or 0.0),
                                       pc.count_distinct(mine["user_id"]).as_py()]
        if is_raw:
            table = events.sort_by([(c, "ascending") for c in EVENTS_SORT])
            cold = publish_day(settings, COLD_EVENTS_TABLE, day, table, EVENTS_SORT, [],
                               {"hour_rows": _hour_counts(table["timestamp"])}, RUN_ID)
            laid.raw_rows, laid.raw_bytes, laid.raw_days = laid.raw_rows + cold.rows, laid.raw_bytes + cold.bytes, \
                laid.raw_days + 1
        if age > 0:  # complete days only: the mover builds a daily rollup once its day is over
            daily = rollup(events, "day").rename_columns([*KEYS, "day", "events", "revenue", "user_ids"])
            daily = daily.sort_by([(k, "ascending") for k in KEYS])
            # the daily rollups and the day sketches (the rows the tier mover builds right after them), appended
            # SKETCH_BATCH days per commit, the daily rollups first: one file per day (per month for the sketches)
            # as the movers leave them; a commit per day would take several times longer on a loaded machine, and
            # the readers list files from the log either way
            daily_batch.append(daily.append_column("dt", pa.array([day] * daily.num_rows, pa.date32())))
            sketch_batch.append(sketch_rows(daily, day))
            laid.daily_days += 1
            if len(sketch_batch) == SKETCH_BATCH:
                _append_daily(settings, daily_batch, laid)
                _append_sketches(settings, sketch_batch, laid, history.today)
                daily_batch, sketch_batch = [], []
        if age <= WARM_DAYS:
            complete = events.filter(pc.less(events["timestamp"], pa.scalar(
                history.now.replace(minute=0, second=0, microsecond=0), pa.timestamp("ms", tz="UTC"))))
            laid_warm = write_warm_day(settings, rollup(complete, "hour"))
            laid.warm_rows += laid_warm[0]
            laid.warm_files += laid_warm[1]
            laid.warm_bytes += laid_warm[2]
        if age <= HOT_DAYS and hot is not None:
            rows = hot_rows(events, minutes=age <= HOT_MINUTE_DAYS)
            laid.hot_rows += rows.num_rows
            laid.hot_minute_rows += rows.num_rows if age <= HOT_MINUTE_DAYS else 0
            hot_batch.append(rows)
            if len(hot_batch) == 3:  # 72 hourly partitions: under ClickHouse's 100 per insert
                hot.insert_arrow("rollups_1m_ingest", pa.concat_tables(hot_batch))
                hot_batch = []
        if offset % 250 == 0 or offset == HISTORY_DAYS:
            print(f"   {day}  {offset + 1:5}/{HISTORY_DAYS + 1} days, {laid.events_total:,} events, "
                  f"{time.perf_counter() - started:.0f}s")
    if hot_batch and hot is not None:
        hot.insert_arrow("rollups_1m_ingest", pa.concat_tables(hot_batch))
    if sketch_batch:
        _append_daily(settings, daily_batch, laid)
        _append_sketches(settings, sketch_batch, laid, history.today)
    from storage_tiers.tiers.day_sketches import compact_months

    t0 = time.perf_counter()
    compacted = compact_months(settings, history.today.replace(day=1), RUN_ID)
    print(f"   compacted the day sketches of {len(compacted)} complete months in {time.perf_counter() - t0:.1f}s")
    for table in (COLD_EVENTS_TABLE, COLD_ROLLUPS_DAILY_TABLE, ROLLUPS_HOURLY_TABLE, DAY_SKETCHES_TABLE):
        delta = open_table(settings, table)
        if delta is not None:
            delta.create_checkpoint()
    laid.seconds = round(time.perf_counter() - started, 1)
    return laid


SKETCH_BATCH = 64


DAY_LAYOUT_LAKE = HOME / "lake_day_layout"  # the day sketches as they were before the months: one file per day


def day_layout_settings() -> Settings:
    return Settings(lake_uri=str(DAY_LAYOUT_LAKE))


def _append_daily(settings: Settings, batch: list[pa.Table], laid: Laid) -> None:
    """Days of daily rollups appended to their table in one commit (one file per day: partition dt)."""
    from common.lake_tables import COLD_ROLLUPS_DAILY_TABLE

    rows = pa.concat_tables(batch)
    append_rows(settings, COLD_ROLLUPS_DAILY_TABLE, rows, "bench", {"rows": rows.num_rows})
    laid.daily_rows += rows.num_rows
    laid.daily_bytes += rows.nbytes  # in memory; the files are smaller (zstd)


def _append_sketches(settings: Settings, batch: list[pa.Table], laid: Laid, today: date) -> None:
    """Days of sketch rows appended in one commit to the day sketches' table (partitioned by month: one file per
    month and commit, the current month's days one commit each, as the movers leave them until the month is
    complete and compacted) and to a copy in the former layout (partitioned by dt: one file per day), the "before"
    of the side-by-side comparison."""
    from deltalake import write_deltalake

    from common.lake_tables import month_label

    rows = pa.concat_tables(batch)
    rows = rows.append_column("dt", pc.cast(rows["day"], pa.date32()))
    months = pa.array([month_label(d) for d in rows["dt"].to_pylist()], pa.string())
    current = pc.equal(months, month_label(today))
    with_month = rows.append_column("month", months)
    older = with_month.filter(pc.invert(current))
    if older.num_rows:
        append_rows(settings, DAY_SKETCHES_TABLE, older, "bench", {"rows": older.num_rows})
    recent = with_month.filter(current)
    for day in sorted(set(recent["dt"].to_pylist())):
        one = recent.filter(pc.equal(recent["dt"], pa.scalar(day, pa.date32())))
        append_rows(settings, DAY_SKETCHES_TABLE, one, "bench", {"rows": one.num_rows})
    from common.lake_tables import table_uri, writer_properties

    write_deltalake(table_uri(day_layout_settings(), DAY_SKETCHES_TABLE), rows, partition_by=["dt"], mode="append",
                    writer_properties=writer_properties(DAY_SKETCHES_TABLE))
    laid.sketch_rows += rows.num_rows
    laid.sketch_bytes += rows.nbytes  # in memory; the files are smaller (zstd)


def write_warm_day(settings: Settings, hourly: pa.Table) -> tuple[int, int, int]:
    """The day's hours appended to the warm Delta table in one commit (one file per hour, as ``batch/hourly.py``
    leaves them); (rows, files, bytes)."""
    if hourly.num_rows == 0:
        return 0, 0, 0
    table = hourly.select(HOURLY_SCHEMA.names).cast(HOURLY_SCHEMA).sort_by([("hour", "ascending"),
                                                                         *((k, "ascending") for k in KEYS)])
    hours = pc.floor_temporal(table["hour"], unit="hour")
    table = table.append_column("dt", pc.cast(hours, pa.date32())).append_column(
        "hour_of_day", pc.cast(pc.hour(hours), pa.int32()))
    from storage_tiers.tiers.cold_files import table_hours

    version = append_rows(settings, ROLLUPS_HOURLY_TABLE, table, "bench", {"rows": table.num_rows})
    day = table["dt"][0].as_py()
    entries = table_hours(settings, ROLLUPS_HOURLY_TABLE, day, open_table(settings, ROLLUPS_HOURLY_TABLE, version))
    return hourly.num_rows, sum(len(e["files"]) for e in entries.values()), sum(e["bytes"] for e in entries.values())


# --------------------------------------------------------------------------------- cold aggregate

RAW_SQL = """
SELECT date_trunc('month', dt) AS month, country, count(*) AS events, sum(revenue) AS revenue,
       count(DISTINCT user_id) AS users
FROM events
WHERE tenant = $tenant AND dt BETWEEN $first AND $last
GROUP BY ALL ORDER BY ALL"""
DAILY_SQL = """
SELECT date_trunc('month', dt) AS month, country, CAST(sum(events) AS BIGINT) AS events, sum(revenue) AS revenue,
       length(list_distinct(flatten(list(user_ids)))) AS users
FROM rollups_daily
WHERE tenant = $tenant AND dt BETWEEN $first AND $last
GROUP BY ALL ORDER BY ALL"""


def evict(folder: Path) -> int:
    """Drop this bench's files under ``folder`` from the OS page cache (only them: other processes' cached
    files stay), so that a first run reads from disk. Returns the files evicted."""
    count = 0
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                count += 1
            finally:
                os.close(fd)
    return count


def bare_scans(settings: Settings, sql: str, params: dict[str, Any], table: Any, runs: int) -> dict[str, Any]:
    """DuckDB alone on the same files (the range's live files from the table's log, no views, a new session): the
    same statement over ``read_parquet`` of them, and a bare scan (the tenant's rows of the range, a count and sums of
    the columns the statement reads, no grouping); warm medians."""
    from common.lake_duckdb import duckdb_uri
    from common.lake_tables import partition_files

    files = [duckdb_uri(f) for f in partition_files(settings, table, days=(params["first"], params["last"]))]
    relation = "read_parquet($files, hive_partitioning = true, hive_types = {'dt': DATE})"
    view = "rollups_daily" if "FROM rollups_daily" in sql else "events"
    same = sql.replace(f"FROM {view}", f"FROM {relation}")
    reads = "sum(len(user_ids)), sum(events)" if view == "rollups_daily" else "sum(hash(user_id))"
    scan = (f"SELECT count(*), count(country), sum(revenue), {reads} FROM {relation} "
            "WHERE tenant = $tenant AND dt BETWEEN $first AND $last")
    out: dict[str, Any] = {"files": len(files)}
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        con.execute("SET TimeZone = 'UTC'")
        for key, statement in (("same_sql", same), ("scan", scan)):
            con.execute(statement, {**params, "files": files}).fetchall()  # the first run warms the page cache
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                con.execute(statement, {**params, "files": files}).fetchall()
                times.append(time.perf_counter() - t0)
            out[f"{key}_warm_median_s"] = round(statistics.median(times), 3)
    finally:
        con.close()
    return out


def cold_aggregate(settings: Settings, name: str, sql: str, params: dict[str, Any], rows_in_range: int,
                   folder: Path, warm_runs: int = 5, table: Any = None) -> tuple[dict[str, Any], pa.Table]:
    from storage_tiers.lake.sql import files_read, lake_connection

    evicted = evict(folder)
    con = lake_connection(settings)
    try:
        t0 = time.perf_counter()
        answer = con.execute(sql, params).to_arrow_table()
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(warm_runs):
            t0 = time.perf_counter()
            con.execute(sql, params).to_arrow_table()
            warm.append(time.perf_counter() - t0)
        files = files_read(con, sql, params)
    finally:
        con.close()
    median = statistics.median(warm)
    bare = bare_scans(settings, sql, params, table, warm_runs) if table is not None else {}
    if bare:
        bare["view_over_bare_sql"] = round(median / bare["same_sql_warm_median_s"], 2)
        bare["view_over_bare_scan"] = round(median / bare["scan_warm_median_s"], 2)
    figures = {"query": name, "bare": bare, "load_avg_1m": round(os.getloadavg()[0], 2),
               "cold_s": round(cold, 3), "warm_median_s": round(median, 3),
               "warm_runs_s": [round(w, 3) for w in warm], "rows_in_range": rows_in_range,
               "cold_rows_per_s": round(rows_in_range / cold), "warm_rows_per_s": round(rows_in_range / median),
               "files_read": files, "files_evicted_from_page_cache": evicted, "result_rows": answer.num_rows}
    return figures, answer


def same_answer(a: pa.Table, b: pa.Table) -> dict[str, Any]:
    rows_a, rows_b = a.to_pylist(), b.to_pylist()
    if len(rows_a) != len(rows_b):
        return {"equal": False, "rows": [len(rows_a), len(rows_b)]}
    diffs = {"events": 0, "users": 0, "revenue": 0}
    for x, y in zip(rows_a, rows_b, strict=True):
        diffs["events"] += x["events"] != y["events"] or (x["month"], x["country"]) != (y["month"], y["country"])
        diffs["users"] += x["users"] != y["users"]
        diffs["revenue"] += abs(x["revenue"] - y["revenue"]) > 1e-6 * max(1.0, abs(x["revenue"]))
    return {"equal": not any(diffs.values()), "rows": len(rows_a), "differing_rows": diffs,
            "events_total": sum(r["events"] for r in rows_a)}


# ------------------------------------------------------------------------------ long ranges, old vs new

LONG_RANGES = (("90d", 90), ("1y", 365), ("7y", 7 * 365))
LAKE_ONLY_NOTE = ("the lake's part of each answer, in process (QueryEngine + the API's lake reader; no hot tier: "
                  "its horizons set to 0, so the lake answers the whole range, the recent 90 days included)")
SCAN_SQL = {
    # (dt: a column of the month layout's files, the folder of the former day layout's)
    "day_sketches": "SELECT count(*) AS n, sum(events) AS events, sum(octet_length(sketch)) AS b "
                    "FROM read_parquet($files, hive_partitioning = true) "
                    "WHERE tenant = $tenant AND dimension = $dimension AND CAST(dt AS DATE) BETWEEN $first AND $last",
    "rollups_daily": "SELECT count(*) AS n, sum(events) AS events, sum(len(user_ids)) AS ids "
                     "FROM read_parquet($files, hive_partitioning = true, hive_types = {'dt': DATE}) "
                     "WHERE tenant = $tenant AND dt BETWEEN $first AND $last",
    "rollups_hourly": "SELECT count(*) AS n, sum(events) AS events, sum(len(user_ids)) AS ids "
                      "FROM read_parquet($files, hive_partitioning = true, hive_types = {'dt': DATE, "
                      "'hour_of_day': INTEGER}) WHERE tenant = $tenant AND dt BETWEEN $first AND $last",
}


def _timed(fn: Any, runs: int, cell_seconds: float) -> tuple[list[float], Any]:
    """At least 2 runs (3 if time allows), up to ``runs`` while under ``cell_seconds``; seconds of each, last result."""
    times, result, started = [], None, time.perf_counter()
    for k in range(runs):
        if k >= 2 and time.perf_counter() - started > cell_seconds:
            break
        t0 = time.perf_counter()
        result = fn(k)
        times.append(time.perf_counter() - t0)
    return times, result


def long_ranges(settings: Settings, now: datetime, runs: int, cell_seconds: float) -> list[dict[str, Any]]:
    """Per range and shape: the old path (daily rollups for day series; warm hourly + daily rollups for totals) and
    the new one (day sketches), side by side, each beside DuckDB's bare scan of the files it reads; answers checked:
    day series equal (events, users; revenue within 1e-9), totals' events equal and unique users within the stated
    bound of the exact count (the daily rollups' distinct ids over the range, ``tier=cold``)."""
    from common.sketches import relative_error_bound
    from serving.query.engine import QueryEngine
    from serving.query.spec import Order, QuerySpec
    from serving.query.tier_routing import Horizons, plan
    from storage_tiers.lake.reader import LakeRollupReader
    from storage_tiers.tiers.day_sketches import PRECISIONS

    horizons = Horizons(hot_minute=timedelta(0), hot_hour=timedelta(0), warm_hour=timedelta(days=365))
    reader = LakeRollupReader(settings, listing_seconds=settings.lake_session_seconds)  # as the API's
    days_reader = LakeRollupReader(day_layout_settings(), listing_seconds=settings.lake_session_seconds)
    old = QueryEngine(None, reader, horizons=horizons, timeout_seconds=600, day_sketches=False)
    new = QueryEngine(None, reader, horizons=horizons, timeout_seconds=600, day_sketches=True, month_sketches=False)
    # totals' complete months from their merged month sketches (the movers merge each month after compacting it)
    merged = QueryEngine(None, reader, horizons=horizons, timeout_seconds=600, day_sketches=True,
                         month_sketches=True)
    from storage_tiers.tiers.day_sketches import compact_months
    from storage_tiers.tiers.month_sketches import day_ranges_outside, merge_months, whole_months

    t0 = time.perf_counter()
    before = now.date().replace(day=1)
    compact_months(settings, before)
    merged_now = merge_months(settings, before, "bench")
    print(f"   month sketches: {len(merged_now)} month(s) merged in {time.perf_counter() - t0:.1f} s "
          f"(the others current)")
    # the day sketches one file per day (before the months), alone in their lake: nothing there says a day is stale
    by_day = QueryEngine(None, days_reader, horizons=horizons, timeout_seconds=600, day_sketches=True)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    try:
        for label, days in LONG_RANGES:
            for shape in ("series", "breakdown"):
                def spec(k: int, tier: str = "auto", days: int = days, shape: str = shape) -> QuerySpec:
                    # each its own range, as uncached requests would be; up to today's midnight (the API's hot tier
                    # answers the recent days, and today has no daily rollups yet)
                    to = midnight - timedelta(seconds=1 + k)
                    extra: dict[str, Any] = ({"granularity": "day"} if shape == "series" else
                                             {"dimensions": ("country",), "order_by": (Order("events"),)})
                    return QuerySpec(metrics=("events", "revenue", "unique_users"), start=to - timedelta(days=days),
                                     end=to, tier=tier, **extra)
                times: dict[str, list[float]] = {"old": [], "days": [], "new": [], "merged": []}
                answers: dict[str, Any] = {}
                started = time.perf_counter()
                for k in range(runs):  # the four paths alternately, on the same data
                    if k >= 2 and time.perf_counter() - started > 4 * cell_seconds:
                        break
                    for name, engine in (("old", old), ("days", by_day), ("new", new), ("merged", merged)):
                        t0 = time.perf_counter()
                        answers[name] = engine.run(TENANT, spec(k), now)
                        times[name].append(time.perf_counter() - t0)
                old_t, new_t, days_t = times["old"], times["new"], times["days"]
                old_answer, new_answer, days_answer = answers["old"], answers["new"], answers["days"]
                scans = {}
                for name, engine_on, files_of in (("old", False, reader), ("days", True, days_reader),
                                                  ("new", True, reader)):
                    def scan(k: int, engine_on: bool = engine_on, shape: str = shape,
                             files_of: LakeRollupReader = files_of) -> None:
                        for segment in plan(spec(k), now, horizons, day_sketches=engine_on):
                            table = segment.source.table
                            files = files_of.files(table, segment.start, segment.end)
                            if files:
                                params = {"files": files, "tenant": TENANT, "first": segment.start.date(),
                                          "last": (segment.end - timedelta(microseconds=1)).date()}
                                if table == "day_sketches":
                                    params["dimension"] = "" if shape == "series" else "country"
                                reader.execute(SCAN_SQL[table], params, 600)
                    scans[name], _ = _timed(scan, runs, cell_seconds)

                def merged_scan(k: int, shape: str = shape) -> None:
                    """DuckDB's bare scan of what the merged path reads: the day rows outside the whole months, the
                    month rows of those (a day series reads the day rows only)."""
                    s = spec(k)
                    months = whole_months(s.start, s.end) if shape != "series" else []
                    months = [m for m in months if m in reader.current_sketch_months()]
                    dimension = "" if shape == "series" else "country"
                    for lo, hi in day_ranges_outside(s.start, s.end, months):
                        files = reader.files("day_sketches", datetime.combine(lo, datetime.min.time(), UTC),
                                             datetime.combine(hi + timedelta(days=1), datetime.min.time(), UTC))
                        if files:
                            reader.execute(SCAN_SQL["day_sketches"], {"files": files, "tenant": TENANT, "first": lo,
                                                                       "last": hi, "dimension": dimension}, 600)
                    if months:
                        table, params = reader.month_relation(months)
                        reader.execute(f"SELECT count(*) AS n, sum(events) AS events, sum(octet_length(sketch)) AS b "
                                       f"FROM {table} WHERE tenant = $tenant AND dimension = $dimension",
                                       {**params, "tenant": TENANT, "dimension": dimension}, 600)
                scans["merged"], _ = _timed(merged_scan, runs, cell_seconds)
                merged_answer = answers["merged"]
                merged_t = times["merged"]
                merged_months = [m for m in whole_months(spec(0).start, spec(0).end)
                                 if m in reader.current_sketch_months()] if shape != "series" else []
                row: dict[str, Any] = {
                    "range": label, "shape": shape,
                    "old_sources": old_answer.sources, "new_sources": new_answer.sources,
                    "old_median_ms": round(statistics.median(old_t) * 1000, 1),
                    "days_median_ms": round(statistics.median(days_t) * 1000, 1),
                    "new_median_ms": round(statistics.median(new_t) * 1000, 1),
                    "old_scan_median_ms": round(statistics.median(scans["old"]) * 1000, 1),
                    "days_scan_median_ms": round(statistics.median(scans["days"]) * 1000, 1),
                    "new_scan_median_ms": round(statistics.median(scans["new"]) * 1000, 1),
                    "days_files": len(days_reader.files("day_sketches", spec(0).start, spec(0).end)),
                    "new_files": len(reader.files("day_sketches", spec(0).start, spec(0).end)),
                    "days_sources": days_answer.sources,
                    "days_and_new_answers_identical": days_answer.rows == new_answer.rows,
                    "runs": [len(old_t), len(days_t), len(new_t)], "lake_metadata_cache": settings.lake_metadata_cache,
                    "new_approximate": new_answer.approximate, "new_error_bounds": new_answer.error_bounds,
                }
                row.update({
                    "merged_median_ms": round(statistics.median(merged_t) * 1000, 1),
                    "merged_scan_median_ms": round(statistics.median(scans["merged"]) * 1000, 1),
                    "merged_months_read": len(merged_months), "merged_runs": len(merged_t),
                    "merged_and_new_identical": (merged_answer.rows, merged_answer.error_bounds) ==
                    (new_answer.rows, new_answer.error_bounds),
                })
                row["merged_over_new"] = round(row["merged_median_ms"] / row["new_median_ms"], 4)
                row["merged_over_old"] = round(row["merged_median_ms"] / row["old_median_ms"], 4)
                row["merged_over_its_scan"] = round(row["merged_median_ms"] / max(row["merged_scan_median_ms"], 0.01),
                                                    2)
                row["new_over_old"] = round(row["new_median_ms"] / row["old_median_ms"], 4)
                row["new_over_days"] = round(row["new_median_ms"] / row["days_median_ms"], 4)
                row["old_over_its_scan"] = round(row["old_median_ms"] / max(row["old_scan_median_ms"], 0.01), 2)
                row["new_over_its_scan"] = round(row["new_median_ms"] / max(row["new_scan_median_ms"], 0.01), 2)
                if shape == "series":
                    a, b = old_answer.rows, new_answer.rows
                    row["answers_equal"] = len(a) == len(b) and all(
                        x[0] == y[0] and x[1] == y[1] and x[3] == y[3]
                        and abs(x[2] - y[2]) <= 1e-9 * max(1.0, abs(x[2])) for x, y in zip(a, b, strict=True))
                else:
                    exact = {r[0]: r[1:] for r in old.run(TENANT, spec(len(new_t) - 1, "cold"), now).rows}
                    bound = relative_error_bound(PRECISIONS["country"])
                    errors = [abs(r[3] - exact[r[0]][2]) / exact[r[0]][2] for r in new_answer.rows]
                    row["unique_users_max_rel_error"] = round(max(errors), 5)
                    row["answers_equal"] = (
                        {r[0]: r[1] for r in new_answer.rows} == {k: v[0] for k, v in exact.items()}
                        and max(errors) <= bound)
                row["answers_equal"] = row["answers_equal"] and row["days_and_new_answers_identical"] \
                    and row["merged_and_new_identical"] and new_answer.sources == ["cold:day_sketches"]
                print(f"   {label:>4} {shape:<9} old {row['old_median_ms']:>9} ms (scan {row['old_scan_median_ms']}) "
                      f"days {row['days_median_ms']:>7} ms (scan {row['days_scan_median_ms']}, {row['days_files']} "
                      f"files) months {row['new_median_ms']:>7} ms (scan {row['new_scan_median_ms']}, "
                      f"{row['new_files']} files) merged {row['merged_median_ms']:>7} ms (scan "
                      f"{row['merged_scan_median_ms']}, {row['merged_months_read']} month rows/value); months/days "
                      f"{row['new_over_days']}, months/old {row['new_over_old']}, merged/months "
                      f"{row['merged_over_new']}, merged/old {row['merged_over_old']}; equal {row['answers_equal']}; "
                      f"load {os.getloadavg()[0]:.2f}")
                row["load_avg_1m"] = round(os.getloadavg()[0], 2)
                out.append(row)
    finally:
        reader.close()
        days_reader.close()
    return out


# ------------------------------------------------------------------------------------------- the API


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _body(days: int, to: datetime, breakdown: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"metrics": ["events", "revenue", "unique_users"],
                            "from": (to - timedelta(days=days)).isoformat(), "to": to.isoformat()}
    if breakdown:
        body |= {"dimensions": ["country"], "order_by": [{"field": "events", "direction": "desc"}]}
    else:
        body["granularity"] = "day"
    return body


def dashboard_latency(http: Any, requests: int, base_to: datetime,
                      cell_seconds: float) -> tuple[list[dict[str, Any]], dict]:
    """Per range and shape: uncached requests (each its own ``to``, one second apart; at least 3, then
    stopped once ``cell_seconds`` are spent: the slow ranges take tens of seconds each), then cached ones."""
    out, answers = [], {}
    for label, days in RANGES:
        for shape in ("series", "breakdown"):
            breakdown = shape == "breakdown"
            misses, outcomes, sources, took = [], {}, set(), []
            cell_started = time.perf_counter()
            for k in range(requests):
                if k >= 3 and time.perf_counter() - cell_started > cell_seconds:
                    break
                to = base_to - timedelta(seconds=1 + k + (5000 if breakdown else 0))
                t0 = time.perf_counter()
                r = http.post("/v1/query", params={"tenant": TENANT}, json=_body(days, to, breakdown))
                elapsed = time.perf_counter() - t0
                r.raise_for_status()
                how = r.headers.get("x-cache", "?")
                outcomes[how] = outcomes.get(how, 0) + 1
                if how == "miss":
                    misses.append(elapsed)
                payload = r.json()
                sources.add(" + ".join(payload["sources"]))
                took.append(payload["took_ms"])
            # one fixed question, asked again and again: the first is a miss, then hits
            cached_body = _body(days, base_to, breakdown)
            first = http.post("/v1/query", params={"tenant": TENANT}, json=cached_body)
            first.raise_for_status()
            answers[(label, shape)] = first.json()
            hits, hit_outcomes = [], {}
            for _ in range(requests):
                t0 = time.perf_counter()
                r = http.post("/v1/query", params={"tenant": TENANT}, json=cached_body)
                elapsed = time.perf_counter() - t0
                how = r.headers.get("x-cache", "?")
                hit_outcomes[how] = hit_outcomes.get(how, 0) + 1
                if how == "hit":
                    hits.append(elapsed)
            row = {"range": label, "shape": shape, "sources": sorted(sources),
                   "approximate": answers[(label, shape)]["approximate"],
                   "result_rows": len(answers[(label, shape)]["rows"]),
                   "uncached_requests": sum(outcomes.values()), "uncached_outcomes": outcomes,
                   "uncached_over_default_timeout": sum(m > DEFAULT_TIMEOUT_S for m in misses),
                   "uncached_p50_ms": round(percentile(misses, 50) * 1000, 1) if misses else None,
                   "uncached_p99_ms": round(percentile(misses, 99) * 1000, 1) if misses else None,
                   "engine_took_p50_ms": round(percentile(took, 50), 1),
                   "cached_outcomes": hit_outcomes,
                   "cached_p50_ms": round(percentile(hits, 50) * 1000, 2) if hits else None,
                   "cached_p99_ms": round(percentile(hits, 99) * 1000, 2) if hits else None}
            print(f"   {label:>4} {shape:<9} uncached p50 {row['uncached_p50_ms']} ms p99 {row['uncached_p99_ms']} ms"
                  f" ({outcomes}), cached p50 {row['cached_p50_ms']} ms ({hit_outcomes}); {row['sources']}")
            out.append(row)
    return out, answers


def check_series(answer: dict[str, Any], laid: Laid, settings: Settings, now: datetime) -> dict[str, Any]:
    """The 7-year day series against the generator's bookkeeping and a direct read of the cold daily files."""
    rows = {r[0][:10]: r[1:] for r in answer["rows"]}
    hot_from = (now - timedelta(days=HOT_DAYS - 1)).date()
    today = now.date().isoformat()
    bad = {"events": [], "revenue": [], "users": []}
    max_user_error, compared = 0.0, 0
    for day, (events, revenue, users) in rows.items():
        if day == today or day == answer["from"][:10]:
            continue  # partial buckets (the range's ends)
        truth = laid.truth[day]
        compared += 1
        if events != truth[0]:
            bad["events"].append(day)
        if abs(revenue - truth[1]) > 1e-6 * max(1.0, truth[1]):
            bad["revenue"].append(day)
        error = abs(users - truth[2]) / max(1, truth[2])
        if date.fromisoformat(day) >= hot_from:
            max_user_error = max(max_user_error, error)
            if error > 0.02:
                bad["users"].append(day)
        elif users != truth[2]:
            bad["users"].append(day)
    missing = [d for d, t in laid.truth.items() if t[0] and answer["from"][:10] < d < today and d not in rows]
    files = _daily_files(settings)
    direct = duckdb.execute("SELECT strftime(day AT TIME ZONE 'UTC', '%Y-%m-%d') AS d, sum(events) AS n "
                            "FROM read_parquet($files) WHERE tenant = $tenant GROUP BY d",
                            {"files": files, "tenant": TENANT}).fetchall()
    cold_days = {d: int(n) for d, n in direct if d in rows and d != answer["from"][:10]
                 and date.fromisoformat(d) < (now - timedelta(days=365)).date()}
    direct_bad = [d for d, n in cold_days.items() if rows[d][0] != n]
    return {"days_compared_with_generator": compared, "mismatching_days": {k: v[:5] for k, v in bad.items()},
            "mismatch_counts": {k: len(v) for k, v in bad.items()}, "days_missing": missing[:5],
            "hot_unique_users_max_rel_error": round(max_user_error, 5),
            "cold_days_compared_with_direct_duckdb": len(cold_days), "direct_duckdb_mismatches": direct_bad[:5],
            "ok": not any(bad.values()) and not missing and not direct_bad and len(cold_days) > 0}


# --------------------------------------------------------------------------------------------- main


def _daily_files(settings: Settings) -> list[str]:
    """The cold daily rollups' live files, from the table's log (never a glob: superseded files may remain)."""
    from common.lake_tables import COLD_ROLLUPS_DAILY_TABLE, partition_files

    return partition_files(settings, COLD_ROLLUPS_DAILY_TABLE)


def machine() -> dict[str, Any]:
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "0")
    return {"cpus": os.cpu_count(), "memory_gib": round(int(mem) / 2**20, 1), "python": platform.python_version(),
            "platform": platform.platform(), "duckdb": duckdb.__version__, "pyarrow": pa.__version__,
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events-per-day", type=int, default=50_000,
                        help="events a day in the cold raw year (traffic grows 25 %% a year around it)")
    parser.add_argument("--requests", type=int, default=30, help="requests per range and shape, uncached and cached")
    parser.add_argument("--cell-seconds", type=float, default=120,
                        help="stop a range's uncached requests after this long (at least 3 are made)")
    parser.add_argument("--fresh", action="store_true", help="wipe the bench home and lay the history again")
    parser.add_argument("--keep", action="store_true", help="keep the bench home even when it is over 1 GiB")
    parser.add_argument("--lake-only", action="store_true",
                        help="the lake tiers and the cold aggregate only: no hot tier, no services, no dashboards")
    args = parser.parse_args()

    os.environ.update(BENCH_ENV)
    from common.hot_store import FlightHotStore
    from serving.tenancy.auth import bearer_headers
    from stack.app_services import full_stack

    settings = Settings()
    stack = None if args.lake_only else full_stack(settings)
    load_at_start = round(os.getloadavg()[0], 2)
    marker = HOME / "history.json"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    previous = json.loads(marker.read_text()) if marker.exists() else None
    reuse = (not args.fresh and previous is not None and previous["events_per_day"] == args.events_per_day
             and previous["today"] == now.date().isoformat() and previous.get("hot", True) == (not args.lake_only))
    if not reuse:
        if stack is not None:
            stack.down()
        shutil.rmtree(HOME, ignore_errors=True)
    if stack is not None:
        print("== starting Redis and the API/hot node (no Kafka: queries do not need it)")
        stack.up(["redis", "api"])
    dashboards: list[dict[str, Any]] = []
    long: list[dict[str, Any]] = []
    check: dict[str, Any] = {"ok": True, "skipped": "--lake-only: no API"}
    memory = MemorySampler(settings.home).start()  # resident memory of each process, in the results
    try:
        if reuse:
            assert previous is not None
            now = datetime.fromisoformat(previous["now"])
            laid = Laid(**{k: v for k, v in previous["laid"].items()})
            print(f"== reusing the history laid at {now:%Y-%m-%d %H:%M} UTC ({HOME})")
        else:
            history = History(args.events_per_day, now.date(), now)
            print(f"== laying {HISTORY_DAYS + 1} days of history up to {now:%Y-%m-%d %H:%M} UTC "
                  f"({args.events_per_day:,} events/day in the cold raw year, +25 %/year; not measured)")
            HOME.mkdir(parents=True, exist_ok=True)
            laid = lay_history(settings, history, None if args.lake_only else FlightHotStore.for_settings(settings))
            marker.write_text(json.dumps({"events_per_day": args.events_per_day, "today": now.date().isoformat(),
                                          "now": now.isoformat(), "hot": not args.lake_only,
                                          "laid": laid.__dict__}) + "\n")
        lake = Path(settings.effective_lake_uri)
        data = {
            "tenants": {t[0]: {"share": t[1], "user_pool": t[2]} for t in TENANTS},
            "event_types": [e[0] for e in EVENTS], "countries": len(COUNTRIES), "devices": len(DEVICES),
            "pages": len(PAGES), "users": f"power law: index = pool x U^{USER_POWER:g}",
            "growth_per_year": GROWTH_PER_YEAR, "diurnal_and_weekday_cycles": True,
            "events_generated": laid.events_total, "history_days": HISTORY_DAYS + 1,
            "cold_raw": {"ages_days": list(COLD_RAW_AGES), "days": laid.raw_days, "rows": laid.raw_rows,
                         "mib": round(laid.raw_bytes / 2**20, 1)},
            "cold_rollups_daily": {"days": laid.daily_days, "rows": laid.daily_rows,
                                   "mib": round(folder_bytes(lake / "cold" / "rollups_daily") / 2**20, 1)},
            "cold_day_sketches": {"days": laid.daily_days, "rows": laid.sketch_rows,
                                  "mib": round(folder_bytes(lake / "cold" / "day_sketches") / 2**20, 1),
                                  "layout": "partitioned by month; complete months compacted into one file each",
                                  "day_layout_copy_mib": round(folder_bytes(DAY_LAYOUT_LAKE) / 2**20, 1)},
            "warm_rollups_hourly": {"days": WARM_DAYS + 1, "files": laid.warm_files, "rows": laid.warm_rows,
                                    "mib": round(laid.warm_bytes / 2**20, 1)},
            "hot": {"days": HOT_DAYS + 1, "rollups_1m_ingest_rows": laid.hot_rows,
                    "minute_rows_last_7_days": laid.hot_minute_rows},
            "lay_seconds": laid.seconds, "now": now.isoformat(),
        }
        print(f"   {json.dumps(data)}")

        print(f"== cold 1-year aggregate for tenant {TENANT}: events, revenue, distinct users per country per month")
        first = (now - timedelta(days=COLD_RAW_AGES[1])).date()
        last = (now - timedelta(days=COLD_RAW_AGES[0])).date()
        params = {"tenant": TENANT, "first": first, "last": last}
        daily_rows_in_range = duckdb.execute(
            "SELECT count(*) FROM read_parquet($files, hive_partitioning = true, hive_types = {'dt': DATE}) "
            "WHERE dt BETWEEN $first AND $last", {"files": _daily_files(settings), "first": first, "last": last}
        ).fetchone()[0]
        from common.lake_tables import COLD_EVENTS_TABLE, COLD_ROLLUPS_DAILY_TABLE

        raw_fig, raw_answer = cold_aggregate(settings, "events view (raw cold events)", RAW_SQL, params,
                                             laid.raw_rows, lake / "cold" / "events", table=COLD_EVENTS_TABLE)
        daily_fig, daily_answer = cold_aggregate(settings, "rollups_daily view", DAILY_SQL, params,
                                                 daily_rows_in_range, lake / "cold" / "rollups_daily",
                                                 table=COLD_ROLLUPS_DAILY_TABLE)
        agreement = same_answer(raw_answer, daily_answer)
        for fig in (raw_fig, daily_fig):
            print(f"   {fig['query']:<32} cold {fig['cold_s']:.2f}s ({fig['cold_rows_per_s']:,} rows/s), "
                  f"warm median {fig['warm_median_s']:.2f}s ({fig['warm_rows_per_s']:,} rows/s), "
                  f"{fig['rows_in_range']:,} rows in range, {fig['files_read']} files read; DuckDB alone on the "
                  f"files: same SQL {fig['bare'].get('same_sql_warm_median_s')}s, bare scan "
                  f"{fig['bare'].get('scan_warm_median_s')}s; load {os.getloadavg()[0]:.2f}")
        print(f"   raw and daily answers equal: {agreement}")

        print("== long ranges, old (daily rollups / warm hourly rollups) vs new (day sketches): " + LAKE_ONLY_NOTE)
        long = long_ranges(settings, now, max(3, min(args.requests, 7)), args.cell_seconds)

        if stack is not None:
            print(f"== dashboards through the API: POST /v1/query, {args.requests} uncached + {args.requests} "
                  "cached each")
            import httpx

            with httpx.Client(base_url=settings.api_url, timeout=400,
                              headers=bearer_headers(settings.admin_key)) as http:
                base_to = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
                base_to = min(base_to, now)  # nothing exists after the history's end
                dashboards, answers = dashboard_latency(http, args.requests, base_to, args.cell_seconds)
            check = check_series(answers[("7y", "series")], laid, settings, now)
            print(f"   7y series vs the generator's bookkeeping and a direct DuckDB read: {check}")
    finally:
        memory.stop()
        if stack is not None:
            print("== stopping the bench services")
            stack.down()
            print(f"== {stack.confirm_stopped()}")  # raises, naming them, if any process of the bench home is left

    print()
    print(f"   {'cold 1-year aggregate':34}{'first (s)':>10}{'warm (s)':>10}{'rows/s warm':>14}{'files':>7}")
    for fig in (raw_fig, daily_fig):
        print(f"   {fig['query']:34}{fig['cold_s']:>10.2f}{fig['warm_median_s']:>10.2f}"
              f"{fig['warm_rows_per_s']:>14,}{fig['files_read']:>7}")
    print()
    print(f"   {'long range':11}{'shape':10}{'old ms':>10}{'old scan':>10}{'days ms':>9}{'days scan':>10}"
          f"{'months ms':>10}{'mo. scan':>10}{'mo./days':>9}{'mo./old':>9}{'load':>6}")
    for row in long:
        print(f"   {row['range']:11}{row['shape']:10}{row['old_median_ms']:>10}{row['old_scan_median_ms']:>10}"
              f"{row['days_median_ms']:>9}{row['days_scan_median_ms']:>10}{row['new_median_ms']:>10}"
              f"{row['new_scan_median_ms']:>10}{row['new_over_days']:>9}{row['new_over_old']:>9}"
              f"{row['load_avg_1m']:>6}")
    print()
    print(f"   {'range':6}{'shape':10}{'uncached p50/p99 ms':>22}{'cached p50/p99 ms':>20}   sources")
    for row in dashboards:
        print(f"   {row['range']:6}{row['shape']:10}{row['uncached_p50_ms']!s:>11}/{row['uncached_p99_ms']!s:<10}"
              f"{row['cached_p50_ms']!s:>9}/{row['cached_p99_ms']!s:<10} {', '.join(row['sources'])}")

    size = folder_bytes(HOME)
    result = {
        "benchmark": "tier_queries",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python -m bench.tier_queries --events-per-day {args.events_per_day} --requests {args.requests}"
                   f" --cell-seconds {args.cell_seconds:g}"
                   + (" --fresh" if args.fresh else "") + (" --lake-only" if args.lake_only else ""),
        "machine": {**machine(), "load_avg_1m_at_start": load_at_start},
        "data": data,
        "cold_one_year_aggregate": {"tenant": TENANT, "days": [first.isoformat(), last.isoformat()],
                                    "question": "events, revenue and distinct users per country per month",
                                    "first_run": "new DuckDB session, bench files evicted from the page cache",
                                    "raw_events": raw_fig, "rollups_daily": daily_fig,
                                    "raw_and_daily_agree": agreement},
        "dashboards": {"endpoint": "POST /v1/query", "tenant": TENANT,
                       "series": "events, revenue, unique_users per day",
                       "breakdown": "events, revenue, unique_users per country", "by_range": dashboards},
        "long_ranges": {"how": LAKE_ONLY_NOTE, "tenant": TENANT,
                        "series": "events, revenue, unique_users per day",
                        "breakdown": "events, revenue, unique_users per country",
                        "scan": "DuckDB's bare scan of the same files (tenant's rows, a count and sums of the columns "
                                "the path reads)", "by_range": long},
        "check_7y_series": check,
        "home_bytes": size,
        "memory": memory.report(),
    }
    target = RESULTS_LAKE if args.lake_only else RESULTS
    if args.events_per_day != parser.get_default("events_per_day"):  # keep the standard history's figures apart
        target = target.with_name(f"{target.stem}_{args.events_per_day}_per_day.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"== written to {target}")
    if size > 2**30 and not args.keep:
        print(f"== deleting the bench home ({size / 2**30:.1f} GiB; --keep keeps it)")
        shutil.rmtree(HOME, ignore_errors=True)
    if not (agreement["equal"] and check["ok"] and all(r["answers_equal"] for r in long)):
        raise SystemExit("answers disagree: see the checks above")


if __name__ == "__main__":
    main()
