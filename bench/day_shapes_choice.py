"""Benchmark behind a design choice: projections on the day copies, or narrow tables of their rows per shape.

In one process over embedded chDB, for each ``--events`` size: the day copies built as ``bench.day_rollups`` builds
them, then the same rows three ways — a plain copy (``plain``), a copy with aggregate projections by event and hour,
by country and by page (``pc``: ClickHouse picks one per query), and narrow tables per shape at hour grain
(``n_eh``, ``n_ehc``, ``n_ehp``) and at day grain (``n_dc``, ``n_de``) — and each dashboard question asked of each
directly, alternately per sample, with the insert cost of each. ``ts_proj_union`` asks the projection table through
the copies' UNION ALL with ``rollups_1h``'s open hours, as the engine reads the copies; ``EXPLAIN projections = 1``
shows which projection (if any) a query used. A comparison of structures, not of the engine's answers (those are in
``bench.day_rollups``).

Usage: ``python -m bench.day_shapes_choice [--events 1500000,15000000] [--samples 30]``; figures printed and written to
``bench/results/day_shapes_choice.json``. Heavy: run it under the integration lock on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.day_rollups import TENANT, build_days, load
from common import day_rollups
from common.hot_schema import migrate
from common.hot_store import ClickHouseHotStore, HotStore

RESULTS = Path(__file__).resolve().parent / "results" / "day_shapes_choice.json"
COLUMNS = ("tenant LowCardinality(String), event LowCardinality(String), hour DateTime('UTC'), "
           "country LowCardinality(String), device LowCardinality(String), page String, events UInt64, "
           "revenue Float64, users AggregateFunction(uniq, String), build UInt64")
NARROW = {"n_eh": "tenant, event, hour", "n_ehc": "tenant, event, hour, country", "n_ehp": "tenant, event, hour, page"}


def _timed(store: HotStore, sql: str) -> float:
    started = time.perf_counter()
    store.command(sql)
    return round(time.perf_counter() - started, 2)


def structures(store: HotStore) -> dict:
    """The copies' rows as a plain table, with projections, and as narrow tables; seconds to insert each."""
    store.command(f"""CREATE TABLE pc ({COLUMNS},
      PROJECTION p_eh (SELECT tenant, event, hour, sum(events), sum(revenue), uniqMerge(users)
                       GROUP BY tenant, event, hour, build),
      PROJECTION p_c (SELECT tenant, event, hour, country, sum(events), sum(revenue), uniqMerge(users)
                      GROUP BY tenant, event, hour, country, build),
      PROJECTION p_p (SELECT tenant, event, hour, page, sum(events), sum(revenue), uniqMerge(users)
                      GROUP BY tenant, event, hour, page, build))
      ENGINE = MergeTree PARTITION BY build ORDER BY (tenant, event, hour, country, device, page)""")
    spent = {"projections": _timed(store, "INSERT INTO pc SELECT tenant, event, hour, country, device, page, events, "
                                          "revenue, users, build FROM rollups_1h_by_day")}
    store.command("CREATE TABLE plain AS rollups_1h_by_day")
    spent["plain"] = _timed(store, "INSERT INTO plain SELECT * FROM rollups_1h_by_day")
    for name, keys in NARROW.items():
        extra = "country LowCardinality(String), " if "country" in keys else "page String, " if "page" in keys else ""
        store.command(f"CREATE TABLE {name} (tenant LowCardinality(String), event LowCardinality(String), "
                      f"hour DateTime('UTC'), {extra}events UInt64, revenue Float64, "
                      f"users AggregateFunction(uniq, String), build UInt64) "
                      f"ENGINE = MergeTree PARTITION BY build ORDER BY ({keys})")
        spent[name] = _timed(store, f"INSERT INTO {name} SELECT {keys}, sum(events), sum(revenue), "
                                    f"uniqMergeState(users), build FROM rollups_1h_by_day GROUP BY {keys}, build")
    for name, keys, extra in (("n_dc", "tenant, event, hour, country", "country LowCardinality(String), "),
                              ("n_de", "tenant, event, hour", "")):
        store.command(f"CREATE TABLE {name} (tenant LowCardinality(String), event LowCardinality(String), "
                      f"hour DateTime('UTC'), {extra}events UInt64, revenue Float64, "
                      f"users AggregateFunction(uniq, String), build UInt64) "
                      f"ENGINE = MergeTree PARTITION BY build ORDER BY ({keys})")
        day_keys = keys.replace("hour", "toStartOfDay(hour)")
        spent[name] = _timed(store, f"INSERT INTO {name} SELECT {day_keys}, sum(events), sum(revenue), "
                                    f"uniqMergeState(users), build FROM rollups_1h_by_day GROUP BY {day_keys}, build")
    return spent


def questions() -> dict[str, str]:
    where = (" WHERE build IN {b:Array(UInt64)} AND tenant = {tenant:String} AND hour >= {start:DateTime('UTC')} "
             "AND hour < {end:DateTime('UTC')} ")
    union = ("(SELECT tenant, event, hour, country, device, page, events, revenue, users FROM {t} "
             "WHERE build IN {b:Array(UInt64)} UNION ALL SELECT tenant, event, hour, country, device, page, events, "
             "revenue, users FROM rollups_1h WHERE hour >= {end:DateTime('UTC')} AND hour < {end:DateTime('UTC')})")
    ts = "SELECT toUInt32(toStartOfInterval(hour, INTERVAL 3600 SECOND)) b, sum(events) e FROM {t}" + where + \
        "GROUP BY b ORDER BY b"
    co = "SELECT country, sum(events) e FROM {t}" + where + "GROUP BY country ORDER BY e DESC LIMIT 100"
    pg = "SELECT page, sumIf(events, event = 'page_view') e FROM {t}" + where + "GROUP BY page ORDER BY e DESC, page " \
         "LIMIT 10"
    uu = "SELECT toUInt32(toStartOfInterval(hour, INTERVAL 86400 SECOND)) b, uniqMerge(users) u FROM {t}" + where + \
         "GROUP BY b ORDER BY b"
    return {
        "select1": "SELECT 1 AS x",
        "scan_plain": "SELECT count() AS rows, sum(events) AS e FROM plain" + where,
        "ts_plain": ts.replace("{t}", "plain"), "ts_proj": ts.replace("{t}", "pc"),
        "ts_n_eh": ts.replace("{t}", "n_eh"),
        "ts_proj_union": ts.replace("{t}", union.replace("{t}", "pc")).replace(
            " build IN {b:Array(UInt64)} AND tenant", " tenant", 1),
        "co_plain": co.replace("{t}", "plain"), "co_proj": co.replace("{t}", "pc"),
        "co_n_ehc": co.replace("{t}", "n_ehc"), "co_n_dc": co.replace("{t}", "n_dc"),
        "pg_plain": pg.replace("{t}", "plain"), "pg_proj": pg.replace("{t}", "pc"),
        "pg_n_ehp": pg.replace("{t}", "n_ehp"),
        "uu_plain": uu.replace("{t}", "plain"), "uu_proj": uu.replace("{t}", "pc"),
        "uu_n_eh": uu.replace("{t}", "n_eh"),
        "uu_n_de": uu.replace("{t}", "n_de"),
    }


def run_size(events: int, samples: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="bench-day-shapes-"))
    store = ClickHouseHotStore(f"chdb://{home}/chdb")
    try:
        migrate(store)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        out: dict = {"load": load(store, events, now), "build": build_days(store, now)}
        out["insert_seconds"] = structures(store)
        print(f"== {events:,} events: {out}", flush=True)
        end = (now - timedelta(days=1)).replace(hour=0, minute=0)  # whole days: every structure holds the range
        start = end - timedelta(days=7)
        params = {"tenant": TENANT, "start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None),
                  "b": [b.build for b in day_rollups.valid_builds(store, start, end)]}
        asked = questions()
        out["projection_used"] = {}
        for name in ("ts_proj", "co_proj", "pg_proj", "ts_proj_union", "uu_proj"):
            explained = store.query_arrow("EXPLAIN projections = 1 " + asked[name], params).to_pylist()
            plan = [r["explain"] for r in explained]
            out["projection_used"][name] = [line.strip() for line in plan if "ReadFromMergeTree (p_" in line]
        times: dict[str, list[float]] = {name: [] for name in asked}
        for _ in range(samples):
            for name, sql in asked.items():
                started = time.perf_counter()
                store.query_arrow(sql, params)
                times[name].append(time.perf_counter() - started)
        out["p50_ms"] = {name: round(statistics.median(v) * 1000, 2) for name, v in times.items()}
        pairs = (("uu_plain", "uu_n_de"), ("co_plain", "co_n_dc"), ("pg_plain", "pg_n_ehp"), ("ts_plain", "ts_n_eh"))
        for a, b in pairs:
            if store.query_arrow(asked[a], params).to_pylist() != store.query_arrow(asked[b], params).to_pylist():
                raise AssertionError(f"{a} and {b} answered differently")
        out["load_average"] = [round(x, 2) for x in os.getloadavg()]
        print(f"   used projections {out['projection_used']}\n   p50 ms {out['p50_ms']}\n   load {out['load_average']}",
              flush=True)
        return out
    finally:
        store.close()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", default="1500000,15000000", help="comma-separated sizes, run in turn")
    parser.add_argument("--samples", type=int, default=30, help="samples per question and size")
    parser.add_argument("--out", default=str(RESULTS), help="where the figures go (JSON)")
    args = parser.parse_args()
    runs = {size: run_size(int(size), args.samples) for size in args.events.split(",")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "samples": args.samples,
                               "runs": runs}, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
