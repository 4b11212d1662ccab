"""Benchmark: latency and throughput of a 7-day dashboard through the API, cached and uncached.

Runs against the bench stack (home ``.lakehouse/bench``, ports 2xxxx, as ``bench.freshness_throughput``;
reused when it is already up). Steps:

1. Load ``--events`` events (default 1.5 M) spread over the last 7 days for one fresh tenant, written
   straight into the hot tier the way the stream writes them (raw events into ``events_raw``, their
   1-minute rollups into ``rollups_1m_ingest``, whose materialized views feed ``rollups_1m`` and
   ``rollups_1h``) over Arrow Flight. Going through Kafka and Spark instead would put 7-day-old events
   behind the stream's watermark (they would be dropped as late), so the direct path is the realistic one
   for history; the load rate is reported.
   Then every day's closed hours are copied (``common.day_rollups``) up to the hour before the current one, as the
   batch layer leaves them after restating that hour, and the hot node's background merges of all that are waited
   for (at most 2 minutes), so that they do not share the cores with the measurement.
2. The dashboard is three widgets over the same 7 days: events per hour (time series), events by country
   (breakdown) and the top 10 pages by page views (top-N). Each is measured alone, sequentially over one
   keep-alive connection: *uncached* (every request a new cache key: ``to`` moves back one second per
   request, every window ending in the last, open hour, so each computes in the hot tier) and *cached* (the
   same request again and again).
3. The time series as "last 7 days" ending now (``range=7d``), one request every 20 ms: how its answers
   split between fresh hits, stale answers refreshed in the background, and misses.
4. Requests/s with ``--clients`` concurrent keep-alive connections cycling over the three cached widgets,
   and the API process's CPU time per request (read from ``/proc``, so other load on the machine does not
   change it).

The HTTP client is a few lines of asyncio over raw sockets (requests prepared once), so that the
client's own cost stays small next to the server's on this 2-core machine, where both share the CPUs.

Usage: ``python -m bench.dashboard_latency [--events 1500000] [--samples 300] [--clients 50] [--seconds 15]
[--fresh]``.
Figures are printed and written to ``bench/results/dashboard_latency.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pyarrow as pa

from bench.freshness_throughput import bench_stack
from bench.memory import MemorySampler
from common.events import EVENT_ARROW_SCHEMA
from common.rollups import minute_rollups

RESULTS = Path(__file__).resolve().parent / "results" / "dashboard_latency.json"
EVENTS = np.array(["page_view", "click", "signup", "purchase", "search"])
EVENT_WEIGHTS = np.array([0.6, 0.25, 0.03, 0.02, 0.10])
COUNTRIES = np.array(["US", "DE", "FR", "GB", "IN", "BR", "JP", "CA", "ES", "IT", "NL", "SE", "PL", "MX", "AU",
                      "KR", "CN", "TR", "AR", "ZA"])
DEVICES = np.array(["desktop", "mobile", "tablet"])
PAGES = np.array([f"/p/{i}" for i in range(300)])


# --- loading -----------------------------------------------------------------------------------------

def synthetic_events(tenant: str, n: int, start: datetime, seconds: int, rng: np.random.Generator, run: str,
                     offset: int) -> pa.Table:
    """About ``n`` events in [start, start + seconds): daily rhythm, skewed pages and countries, 50k users."""
    t = rng.uniform(0, seconds, n * 2)
    hour_of_day = ((start.timestamp() + t) % 86_400) / 3600
    keep = rng.uniform(0, 1, t.size) < 0.55 + 0.45 * np.sin((hour_of_day - 8) / 24 * 2 * np.pi)  # busier by day
    t = np.sort(t[keep][:n])
    n = t.size
    ts = np.int64(start.timestamp() * 1000) + (t * 1000).astype(np.int64)
    event = rng.choice(EVENTS, n, p=EVENT_WEIGHTS)
    page_rank = np.minimum(rng.zipf(1.3, n) - 1, PAGES.size - 1)
    country_rank = np.minimum(rng.zipf(1.6, n) - 1, COUNTRIES.size - 1)
    revenue = np.where(event == "purchase", np.round(rng.gamma(2.0, 20.0, n), 2), 0.0)
    users = rng.integers(0, 50_000, n)
    return pa.table({
        "tenant": pa.array([tenant] * n, pa.string()),
        "event": pa.array(event), "timestamp": pa.array(ts, pa.timestamp("ms", tz="UTC")),
        "event_id": pa.array([f"{run}-{offset + i}" for i in range(n)]),
        "user_id": pa.array(np.char.add("u", users.astype(str))),
        "page": pa.array(PAGES[page_rank]), "country": pa.array(COUNTRIES[country_rank]),
        "device": pa.array(rng.choice(DEVICES, n, p=[0.5, 0.42, 0.08])), "revenue": pa.array(revenue),
        "properties": pa.array([""] * n, pa.string()),
        "received_at": pa.array(ts + 200, pa.timestamp("ms", tz="UTC")),
    }, schema=EVENT_ARROW_SCHEMA)


def load(store, tenant: str, total: int, end: datetime, slice_hours: int = 12) -> dict:
    """One insert per ``slice_hours`` of event time (the hot tables are partitioned by hour, and one insert
    may touch at most 100 partitions), oldest first, as a backfill would."""
    rng = np.random.default_rng(2026)
    run = uuid.uuid4().hex[:8]
    slices = 7 * 24 // slice_hours
    started = time.perf_counter()
    generate_s = insert_s = 0.0
    loaded = rollup_rows = 0
    for k in range(slices):
        t0 = time.perf_counter()
        start = end - timedelta(days=7) + timedelta(hours=k * slice_hours)
        events = synthetic_events(tenant, total // slices, start, slice_hours * 3600, rng, run, loaded)
        rollups = minute_rollups(events)
        t1 = time.perf_counter()
        store.insert_arrow("events_raw", events, token=f"{run}:{k}:raw")
        store.insert_arrow("rollups_1m_ingest", rollups, token=f"{run}:{k}:rollups")
        t2 = time.perf_counter()
        generate_s, insert_s = generate_s + t1 - t0, insert_s + t2 - t1
        loaded += events.num_rows
        rollup_rows += rollups.num_rows
        if (k + 1) % 2 == 0:
            print(f"   loaded {loaded:,} events ({rollup_rows:,} minute rollup rows)", flush=True)
    wall = time.perf_counter() - started
    return {"events": loaded, "minute_rollup_rows": rollup_rows, "seconds": round(wall, 1),
            "generate_and_rollup_s": round(generate_s, 1), "insert_s": round(insert_s, 1),
            "events_per_s": round(loaded / wall), "insert_events_per_s": round(loaded / insert_s)}


def build_closed_days(store, end: datetime) -> dict:
    """Every day of the 7 days before ``end`` copied up to the hour before ``end``'s hour, as the batch layer leaves
    them once it restated that hour (``common.day_rollups``): questions read the closed hours from the copies and the
    last hour or two (still open) from rollups_1h."""
    from common import day_rollups

    closed = end.replace(minute=0, second=0, microsecond=0, tzinfo=None) - timedelta(hours=1)
    started, builds, day = time.perf_counter(), 0, (end - timedelta(days=8)).date()
    while day <= closed.date():
        day_rollups.build(store, day, closed)
        builds, day = builds + 1, day + timedelta(days=1)
    return {"days": builds, "through": closed.isoformat(), "seconds": round(time.perf_counter() - started, 2)}


def wait_for_merges(store, at_most_s: float = 120.0) -> float:
    """Wait until the hot node merges no part (what the load and the copies wrote is merged in the background, on the
    same two cores the measurement uses); the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < at_most_s:
        if not store.query_arrow("SELECT count() AS n FROM system.merges").to_pylist()[0]["n"]:
            break
        time.sleep(0.5)
    return time.perf_counter() - started


# --- a small HTTP/1.1 keep-alive client -----------------------------------------------------------------

class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def prepare(host: str, path: str, params: dict[str, str], key: str) -> bytes:
    return (f"GET {path}?{urlencode(params)} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            "Accept: application/json\r\n\r\n").encode()


def percentiles(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 2)

    return {"n": len(ordered), "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": round(ordered[-1], 2),
            "mean_ms": round(statistics.fmean(ordered), 2)}


def widgets(tenant: str, start: datetime, end: datetime) -> dict[str, tuple[str, dict[str, str]]]:
    window = {"tenant": tenant, "from": start.isoformat(), "to": end.isoformat()}
    return {
        "timeseries_by_hour": ("/v1/timeseries", {"metric": "events", "granularity": "hour", **window}),
        "breakdown_by_country": ("/v1/breakdown", {"metric": "events", "by": "country", **window}),
        "top10_pages": ("/v1/topn", {"metric": "page_views", "by": "page", "n": "10", **window}),
    }


async def sequential(host: str, port: int, requests: list[bytes], expect_cache: set[str],
                     engine_ms: list[float] | None = None) -> list[float]:
    """Latencies (ms) of ``requests`` one after the other; ``engine_ms`` collects each answer's ``took_ms``
    (the query engine's own time, i.e. without HTTP, cache and JSON) when given."""
    conn = await Connection(host, port).open()
    out = []
    try:
        for raw in requests:
            t0 = time.perf_counter()
            status, headers, body = await conn.request(raw)
            out.append((time.perf_counter() - t0) * 1000)
            if status != 200 or headers.get("x-cache") not in expect_cache:
                raise RuntimeError(f"unexpected answer {status} x-cache={headers.get('x-cache')}")
            if engine_ms is not None:
                engine_ms.append(json.loads(body)["took_ms"])
    finally:
        conn.close()
    return out


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc): the server's cost per request, whatever else
    runs on the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def api_cpu_seconds(pid: int) -> float:
    """CPU time of the API: its process and its children (the workers with ``LAKEHOUSE_API_WORKERS``)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sum(process_cpu_seconds(p) for p in [pid, *(int(c) for c in children)])


async def outcomes_and_latency(host: str, port: int, raw: bytes, n: int, pause_s: float) -> dict:
    """``n`` requests of one open-window question, ``pause_s`` apart: how often the answer came from a
    fresh entry, a stale one (refreshed in the background) or a computation, and the latencies."""
    conn = await Connection(host, port).open()
    latencies, outcomes = [], {}
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            status, headers, _ = await conn.request(raw)
            latencies.append((time.perf_counter() - t0) * 1000)
            outcome = f"{status}:{headers.get('x-cache')}"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            await asyncio.sleep(pause_s)
    finally:
        conn.close()
    return {"outcomes": outcomes, "latency": percentiles(latencies)}


async def throughput(host: str, port: int, requests: list[bytes], clients: int, seconds: float) -> dict:
    stop = time.perf_counter() + seconds
    latencies: list[float] = []
    outcomes: dict[str, int] = {}

    async def client(k: int) -> None:
        conn = await Connection(host, port).open()
        i = k
        try:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                status, headers, _ = await conn.request(requests[i % len(requests)])
                latencies.append((time.perf_counter() - t0) * 1000)
                outcome = f"{status}:{headers.get('x-cache')}"
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                i += 1
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - started
    return {"clients": clients, "seconds": round(wall, 1), "requests": len(latencies),
            "requests_per_s": round(len(latencies) / wall), "outcomes": outcomes, "latency": percentiles(latencies)}


def measure(settings, tenant: str, samples: int, clients: int, seconds: float, api_pid: int | None,
            ) -> dict:
    host, port, key = settings.api_host, settings.api_port, settings.admin_key
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=7)
    out: dict = {"window": {"from": start.isoformat(), "to": end.isoformat()}, "widgets": {}}
    cached_requests = []
    for name, (path, params) in widgets(tenant, start, end).items():
        # uncached: each request its own key (the window ends one second earlier each time, so every one ends in
        # the last hour, which is still open, as a dashboard's window ending now does)
        misses = [prepare(host, path, {**params, "from": (start - timedelta(seconds=k + 1)).isoformat(),
                                       "to": (end - timedelta(seconds=k + 1)).isoformat()}, key)
                  for k in range(samples)]
        engine: list[float] = []
        uncached = asyncio.run(sequential(host, port, misses, {"miss"}, engine))
        raw = prepare(host, path, params, key)
        asyncio.run(sequential(host, port, [raw], {"miss", "hit"}))  # fill the entry
        cached = asyncio.run(sequential(host, port, [raw] * samples * 3, {"hit"}))
        out["widgets"][name] = {"uncached": percentiles(uncached), "uncached_engine_only": percentiles(engine),
                                "cached": percentiles(cached)}
        cached_requests.append(raw)
        print(f"   {name:22} uncached {out['widgets'][name]['uncached']}\n   {'':22} cached   "
              f"{out['widgets'][name]['cached']}", flush=True)
    # "last 7 days" ending now: a 0.5 s fresh TTL, then stale-while-revalidate (a request every 20 ms)
    path, params = widgets(tenant, start, end)["timeseries_by_hour"]
    open_window = prepare(host, path, {k: v for k, v in params.items() if k not in ("from", "to")} | {"range": "7d"},
                          key)
    out["open_window_timeseries"] = asyncio.run(outcomes_and_latency(host, port, open_window, samples * 3, 0.02))
    print(f"   open window (range=7d) timeseries: {out['open_window_timeseries']}", flush=True)
    asyncio.run(sequential(host, port, cached_requests, {"miss", "hit"}))  # entries may have expired meanwhile
    cpu_before = api_cpu_seconds(api_pid) if api_pid else None
    out["cached_throughput"] = asyncio.run(throughput(host, port, cached_requests, clients, seconds))
    if cpu_before is not None:
        cpu = api_cpu_seconds(api_pid) - cpu_before
        served = out["cached_throughput"]["requests"]
        out["cached_throughput"]["api_cpu_us_per_request"] = round(cpu / served * 1e6)
        out["cached_throughput"]["requests_per_api_cpu_second"] = round(served / cpu)
    print(f"   {clients} clients, cached: {out['cached_throughput']}", flush=True)
    return out


def print_table(result: dict) -> None:
    rows = [("widget (7 days)", "uncached p50", "uncached p99", "cached p50", "cached p99")]
    for name, w in result["measure"]["widgets"].items():
        rows.append((name, f"{w['uncached']['p50_ms']} ms", f"{w['uncached']['p99_ms']} ms",
                     f"{w['cached']['p50_ms']} ms", f"{w['cached']['p99_ms']} ms"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    t = result["measure"]["cached_throughput"]
    print(f"cached, {t['clients']} concurrent clients: {t['requests_per_s']:,} requests/s "
          f"(p50 {t['latency']['p50_ms']} ms, p99 {t['latency']['p99_ms']} ms); API CPU per request "
          f"{t.get('api_cpu_us_per_request')} µs = {t.get('requests_per_api_cpu_second')} requests per CPU-second")
    print("uncached, query engine only (took_ms): " + ", ".join(
        f"{name} p50 {w['uncached_engine_only']['p50_ms']} / p99 {w['uncached_engine_only']['p99_ms']} ms"
        for name, w in result["measure"]["widgets"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_500_000)
    parser.add_argument("--samples", type=int, default=300, help="requests per widget and mode")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of the throughput phase")
    parser.add_argument("--tenant", default="", help="reuse a tenant loaded by an earlier run (skips the load)")
    parser.add_argument("--keep-up", action="store_true", help="leave the bench stack running afterwards")
    parser.add_argument("--fresh", action="store_true",
                        help="wipe the bench stack's data first (the hot tier then holds this run's tenant alone)")
    args = parser.parse_args()

    from common.hot_store import FlightHotStore
    from stack.app_services import app_services

    settings, stack = bench_stack(args.fresh)
    services = ["kafka", "minio", "redis", *app_services(settings)]  # with API workers, the hot node first
    already = {s.name for s in stack.status(services) if s.state == "running"}
    print(f"== starting the bench stack: {', '.join(services)} (already running: {', '.join(already) or 'none'})")
    stack.up(services)
    memory = MemorySampler(settings.home).start()  # resident memory of each process, in the results
    store = FlightHotStore.for_settings(settings)
    tenant = args.tenant or f"bench-dash-{uuid.uuid4().hex[:8]}"
    loaded = None
    if not args.tenant:
        print(f"== loading {args.events:,} events over 7 days for tenant {tenant}")
        loaded = load(store, tenant, args.events, datetime.now(UTC))
        print(f"   {loaded}")
    copies = build_closed_days(store, datetime.now(UTC))
    print(f"== day copies built as the batch layer leaves them: {copies}")
    settled = wait_for_merges(store)
    print(f"== the hot node's background merges of the load finished after {settled:.1f}s")
    print("== measuring the dashboard")
    from stack.process import read_pid

    record = read_pid(settings.home / "run" / "api.pid")
    measured = measure(settings, tenant, args.samples, args.clients, args.seconds, record.pid if record else None)
    memory.stop()
    result = {
        "benchmark": "dashboard_latency",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()]},
        "command": "python -m bench.dashboard_latency " + " ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
            for k, v in vars(args).items() if v not in (False, None, "")),
        "tenant": tenant,
        "load": loaded,
        "day_copies": copies,
        "merges_waited_s": round(settled, 1),
        "measure": measured,
        "memory": memory.report(),
        "targets": {"uncached_p50_ms": 10, "uncached_p99_ms": 25, "cached_requests_per_s": 5000,
                    "cached_throughput_p99_ms": 20},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"== written to {RESULTS}")
    if not args.keep_up:
        started = [name for name in services if name not in already]
        stack.down(started)  # only what this run started
        print(f"== {stack.confirm_stopped(None if not already else started)}")  # raises if any is left


if __name__ == "__main__":
    main()
