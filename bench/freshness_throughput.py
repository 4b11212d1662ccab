"""Benchmark: end-to-end freshness and sustained throughput of the speed layer.

Runs its own stack (home ``.lakehouse/bench``, ports 29xxx) so that the demo's data is untouched:

1. Kafka → hot tier: ``--kafka-events`` events are produced straight to Kafka, then the stream job
   starts and drains them; throughput is rows / wall time of its micro-batches (``stream_progress``).
2. API → hot tier: ``--clients`` threads post 1,000-event batches for ``--seconds`` while a probe
   measures freshness (event sent → visible through ``GET /v1/timeseries``) once a second.

3. Freshness at a paced ``--paced-rate`` (default 5,000 events/s) once the stream has drained phase 2:
   the freshness a dashboard sees when ingestion stays within what the stream sustains. Where it goes:
   ``split_probes`` (per probe: the POST, send → in the hot tier, hot tier → answered by the API) and
   ``micro_batches`` (medians per part of the hot query's micro-batches, from the stream log).

The API phase runs once per ``--api-modes`` (``sync``: the default, answered after Kafka's acks=all;
``async``: ``?sync=false``, answered once queued), so the cost of durability is measured side by side.
``--only api`` (or ``paced``, ``kafka``, comma-separated) runs just those phases.

Usage: ``python -m bench.freshness_throughput [--seconds 120] [--clients 4] [--kafka-events 3000000]``.
Figures are printed and written to ``bench/results/freshness_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from kafka import KafkaProducer

from bench import jvm_profile
from bench.memory import MemorySampler
from common.events import format_ts, normalize_event
from demo.load import PROBE_TENANT, FreshnessProbe, PeriodicProbe, percentile
from ingest.publisher import EVENTS_PER_MESSAGE

RESULTS = Path(__file__).resolve().parent / "results" / "freshness_throughput.json"
_OFFSET = int(os.environ.get("LAKEHOUSE_TEST_PORT_OFFSET", "0"))  # as the tests: side-by-side runs do not collide
BENCH_ENV = {
    "LAKEHOUSE_KAFKA_BOOTSTRAP": f"localhost:{29092 + _OFFSET}",
    "LAKEHOUSE_S3_ENDPOINT": f"http://127.0.0.1:{29000 + _OFFSET}",
    "LAKEHOUSE_REDIS_URL": f"redis://127.0.0.1:{26379 + _OFFSET}/0",
    "LAKEHOUSE_API_PORT": str(28000 + _OFFSET),
    "LAKEHOUSE_HOT_NODE_URL": f"grpc://127.0.0.1:{28815 + _OFFSET}",
}


class EventTemplates:
    """Pre-serialized events whose id and time are patched in per send: generating 10 M events in Python would
    take longer than sending them, every id must be unique or the stream drops it as a duplicate, and every time
    must be the send's, or after the watermark delay (10 minutes) a long run's events would all be late (dropped
    from the hot tier as soon as anything newer, a freshness probe, moved the watermark on). The events posted
    keep their time; ``normalized`` (produced straight to Kafka in one go) keeps the time of the templates."""

    def __init__(self, n: int = 2000) -> None:
        from demo.clickstream import Clickstream

        now = datetime.now(UTC)
        events = [e.body for e in Clickstream(seed=99).batch(n, now, duplicate_rate=0, malformed_rate=0)]
        self.raw = [orjson.dumps({**e, "event_id": "@ID@", "timestamp": "@TS@"}) for e in events]
        limits = {"now": now, "max_age": timedelta(days=1), "max_future": timedelta(minutes=5)}
        self.normalized = [orjson.dumps(normalize_event({**e, "event_id": "@ID@"}, **limits)) for e in events]
        self.normalized_at = [orjson.dumps({**orjson.loads(e), "timestamp": "@TS@"}) for e in self.normalized]
        self.run = uuid.uuid4().hex[:8]
        self._n = 0
        self._lock = threading.Lock()

    def ids(self, count: int) -> range:
        with self._lock:
            start = self._n
            self._n += count
        return range(start, start + count)

    def body(self, count: int) -> bytes:
        ids = self.ids(count)
        now = datetime.now(UTC).isoformat(timespec="milliseconds").encode()
        parts = [self.raw[i % len(self.raw)].replace(b"@ID@", f"{self.run}-{i}".encode()).replace(b"@TS@", now)
                 for i in ids]
        return b"[" + b",".join(parts) + b"]"


def admin_headers(settings) -> dict[str, str]:
    """The benchmark writes and reads several tenants: the admin key, which is not rate limited."""
    from serving.tenancy.auth import bearer_headers

    return bearer_headers(settings.admin_key)


def hot_count(store) -> int:
    return store.query_arrow("SELECT count() AS n FROM events_raw").to_pylist()[0]["n"]


def bench_kafka_to_hot(settings, stack, store, n: int, hours: float = 0) -> dict:
    """``n`` events produced straight to Kafka, then drained by a stream started after; with ``hours``, their event
    times spread evenly over the last ``hours`` (a backlog of a quiet night: each micro-batch spans hours of event
    time, so the watermark moves on by hours at once), else the templates' own (a few minutes)."""
    templates = EventTemplates()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20,
                             batch_size=512 * 1024, compression_type="lz4")
    first = datetime.now(UTC) - timedelta(hours=hours)
    started = time.perf_counter()
    # Records as the ingestion API writes them: JSON arrays of EVENTS_PER_MESSAGE events.
    for chunk in range(0, n, EVENTS_PER_MESSAGE):
        ids = templates.ids(min(EVENTS_PER_MESSAGE, n - chunk))
        if hours:
            at = templates.normalized_at
            events = [at[i % len(at)].replace(b"@ID@", f"{templates.run}-k{i}".encode()).replace(
                b"@TS@", format_ts(first + timedelta(hours=hours * i / n)).encode()) for i in ids]
        else:
            events = [templates.normalized[i % len(templates.normalized)].replace(
                b"@ID@", f"{templates.run}-k{i}".encode()) for i in ids]
        producer.send(settings.kafka_topic, b"[" + b",".join(events) + b"]")
        if chunk and chunk % 500_000 == 0:
            print(f"   produced {chunk:,} events")
    producer.flush()
    produce_s = time.perf_counter() - started
    print(f"   produced {n:,} events in {produce_s:.1f}s ({n / produce_s:,.0f}/s)")
    before = hot_count(store)
    log = settings.home / "logs" / "stream.log"
    log_start = log.stat().st_size if log.exists() else 0
    stream_started = datetime.now(UTC).replace(microsecond=0)
    cpu = MemorySampler(settings.home).start()  # the CPU each process spends from the stream's start to the drain
    stack.up(["stream"])
    # Drain time is measured from the end of the first micro-batch: that one carries Spark's JIT and
    # state-store warm-up (reported apart), the rest is the sustained rate.
    deadline = time.monotonic() + 900
    first_done, first_rows = None, 0
    started = time.perf_counter()
    while time.monotonic() < deadline:
        count = hot_count(store) - before
        if first_done is None and count > 0:
            first_done, first_rows = time.perf_counter(), count
        if count >= n:
            break
        time.sleep(0.2)
    drained = time.perf_counter()
    sustained_s = drained - (first_done or started)
    hot_rows = hot_count(store) - before
    records = -(-n // EVENTS_PER_MESSAGE)
    all_drained = wait_queries_drained(store, stream_started, records)
    cpu.stop()
    return {"cpu_per_event": cpu_per_event(cpu.report(), n), "events": n, "produce_events_per_s": round(n / produce_s),
            "first_batch_events": first_rows, "first_batch_s": round((first_done or drained) - started, 2),
            "sustained_s": round(sustained_s, 2),
            "kafka_to_hot_events_per_s": round((n - first_rows) / sustained_s) if sustained_s > 0 else None,
            # From the stream's start to the last event in the hot tier, warm-up included: steadier between runs than
            # the sustained figure, which moves with where the landing's one large micro-batch falls.
            "whole_run_events_per_s": round(n / (drained - started)),
            "hot_rows_after": hot_rows,
            "all_queries_drained_s": None if all_drained is None else round(all_drained - started, 1),
            "queries": query_split(store, stream_started), "hot_stages": hot_stage_split(settings, log_start),
            "stream_typed_instants": settings.stream_typed_instants,  # LAKEHOUSE_STREAM_TYPED_INSTANTS of the run
            "event_time_hours": hours}


def cpu_per_event(report: dict, events: int) -> dict:
    """Where the whole run's CPU went, in µs an event: per service (the API process is the hot node: its inserts),
    and per process of the stream (its JVM, the Python workers, the driver). The stream's start (JVM start, JIT)
    is in it, as it is in the whole-run rate."""
    per_service = {name: round(v["cpu_s"] / events * 1e6, 2) for name, v in report["services"].items()}
    stream = {p["process"]: round(p["cpu_s"] / events * 1e6, 2) for p in report["processes"]
              if p["service"] == "stream" and p["cpu_s"] > 0}
    return {"services_us": per_service, "stream_processes_us": stream,
            "total_us": round(sum(per_service.values()), 2)}


QUERIES = ("hot", "landing")


def query_split(store, since: datetime) -> dict[str, dict]:
    """Per streaming query since ``since``: micro-batches, Kafka records read, and the time its batches took
    (``stream_progress``): the landing reads the whole topic too and shares the cores."""
    rows = store.query_arrow(
        "SELECT query_name, count() AS batches, sum(input_rows) AS records, sum(duration_ms) AS batch_ms, "
        "max(input_rows) AS largest FROM stream_progress WHERE finished_at >= "
        f"toDateTime64('{since:%Y-%m-%d %H:%M:%S}', 3, 'UTC') AND input_rows > 0 GROUP BY query_name"
    ).to_pylist()
    return {r["query_name"]: {"batches": r["batches"], "records": r["records"],
                              "batch_s": round(r["batch_ms"] / 1000, 1), "largest_batch_records": r["largest"]}
            for r in rows}


def hot_busy_share(store, since: datetime) -> float | None:
    """The share of the time since ``since`` the hot query spent in micro-batches (``stream_progress``: each batch's
    trigger start and duration): near 1 it runs back to back, and freshness is about two of its batches."""
    rows = store.query_arrow(
        "SELECT toUnixTimestamp64Milli(finished_at) AS started, duration_ms FROM stream_progress WHERE query_name = "
        f"'hot' AND finished_at >= toDateTime64('{since:%Y-%m-%d %H:%M:%S}', 3, 'UTC') ORDER BY started"
    ).to_pylist()
    if len(rows) < 2:
        return None
    span = rows[-1]["started"] + rows[-1]["duration_ms"] - rows[0]["started"]
    return round(sum(r["duration_ms"] for r in rows) / span, 2) if span > 0 else None


def wait_queries_drained(store, since: datetime, records: int, timeout: float = 240) -> float | None:
    """When every query has read the ``records`` produced (the landing's 30 s trigger makes it the last)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        split = query_split(store, since)
        if all(split.get(q, {}).get("records", 0) >= records for q in QUERIES):
            return time.perf_counter()
        time.sleep(1)
    return None


_STAGES = re.compile(r"batch \d+: ([\d,]+) events .* \(read\+dedup ([\d.]+)s, rollup ([\d.]+)s, insert ([\d.]+)s\)")


_STATE = re.compile(r"progress hot batch \d+: .* dedup state: updates ([\d.]+)s, removals ([\d.]+)s, commit ([\d.]+)s")


def hot_stage_split(settings, log_start: int) -> dict:
    """The hot query's own split of its micro-batches, summed from the stream log (lines of this run)."""
    log = settings.home / "logs" / "stream.log"
    text = log.read_bytes()[log_start:].decode("utf-8", "replace") if log.exists() else ""
    total = {"batches": 0, "events": 0, "read_dedup_s": 0.0, "rollup_s": 0.0, "insert_s": 0.0}
    for match in _STAGES.finditer(text):
        total["batches"] += 1
        total["events"] += int(match[1].replace(",", ""))
        for key, value in zip(("read_dedup_s", "rollup_s", "insert_s"), match.groups()[1:], strict=True):
            total[key] = round(total[key] + float(value), 2)
    for match in _STATE.finditer(text):  # Spark's own figures (stream.job.stage_split), when the stream logs them
        for key, value in zip(("dedup_state_updates_s", "dedup_state_removals_s", "dedup_state_commit_s"),
                              match.groups(), strict=True):
            total[key] = round(total.get(key, 0.0) + float(value), 2)
    return total


class UncachedQueries:
    """``clients`` threads asking 90-day time series that miss the cache (each request's range starts at an
    instant no other request used): the dashboards whose questions must not stall freshness."""

    def __init__(self, settings, clients: int, days: int = 90) -> None:
        self.settings, self.days = settings, days
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.outcomes: dict[str, int] = {}
        self._n = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._ask, daemon=True) for _ in range(clients)]

    def _ask(self) -> None:
        with httpx.Client(base_url=self.settings.api_url, timeout=120, headers=admin_headers(self.settings)) as http:
            while not self.stop.is_set():
                with self._lock:
                    self._n += 1
                    n = self._n
                end = datetime.now(UTC)
                start = end - timedelta(days=self.days, milliseconds=n)  # a new range: never a cached answer
                t0 = time.perf_counter()
                r = http.get("/v1/timeseries", params={"metric": "events", "tenant": "acme", "granularity": "day",
                                                       "from": start.isoformat(), "to": end.isoformat()})
                outcome = r.headers.get("x-cache", "none") if r.status_code == 200 else f"http {r.status_code}"
                with self._lock:
                    self.latencies.append(time.perf_counter() - t0)
                    self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def __enter__(self) -> UncachedQueries:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join()

    def summary(self) -> dict:
        return {"clients": len(self._threads), "range_days": self.days, "queries": len(self.latencies),
                "query_p50_ms": round(percentile(self.latencies, 50) * 1000, 1) if self.latencies else None,
                "query_p99_ms": round(percentile(self.latencies, 99) * 1000, 1) if self.latencies else None,
                "outcomes": self.outcomes}


class SplitProbe(PeriodicProbe):
    """Where a probe event's freshness goes: every ``interval_s`` (between the headline probe's events) one event is
    posted, then the hot tier (``rollups_1m``, what the dashboard reads, straight from the hot node) and the API
    (``GET /v1/timeseries``, as the headline probe) are polled every ``poll_s`` on two threads. Per probe: the POST
    (the API's ``acks=all`` produce), send → in the hot tier (the stream), in the hot tier → answered by the API (the
    serving side: its cache of open ranges). Sparser than the headline probe, so that its own requests load the API
    and the hot node little (a probe polls until it sees its event: the longer freshness, the more poll at once)."""

    def __init__(self, settings, store, interval_s: float = 5.0, timeout_s: float = 60.0, poll_s: float = 0.1) -> None:
        super().__init__(interval_s, timeout_s, offset_s=0.5)  # between the headline probe's events (one a second)
        self._settings, self._store, self._tenant, self._poll_s = settings, store, PROBE_TENANT, poll_s
        self.rows: list[dict[str, float]] = []

    def _poll(self, seen, sent: float, out: dict, key: str) -> None:
        while time.perf_counter() - sent < self._timeout:
            if seen():
                out[key] = time.perf_counter() - sent
                return
            time.sleep(self._poll_s)

    def _one(self) -> None:
        page = f"/split/{uuid.uuid4().hex[:12]}"
        event = {"tenant": self._tenant, "event": "probe", "timestamp": datetime.now(UTC).isoformat(),
                 "user_id": "probe", "page": page}
        out: dict[str, float] = {}
        with httpx.Client(base_url=self._settings.api_url, timeout=10, headers=admin_headers(self._settings)) as http:
            sent = time.perf_counter()
            http.post("/events", json=[event]).raise_for_status()
            out["post_s"] = time.perf_counter() - sent
            params = {"metric": "events", "tenant": self._tenant, "range": "15m", "filter": f"page:{page}"}

            def in_hot() -> bool:
                return bool(self._store.query_arrow(
                    "SELECT count() AS n FROM rollups_1m WHERE tenant = {t:String} AND event = 'probe' "
                    "AND page = {p:String}", {"t": self._tenant, "p": page}).to_pylist()[0]["n"])

            def in_api() -> bool:
                series = http.get("/v1/timeseries", params=params).json().get("series", [])
                return bool(series and sum(p[1] for p in series[0]["points"]) >= 1)

            hot = threading.Thread(target=self._poll, args=(in_hot, sent, out, "hot_s"), daemon=True)
            hot.start()
            self._poll(in_api, sent, out, "api_s")
            hot.join(self._timeout)
        if "hot_s" in out and "api_s" in out:
            self.rows.append(out)

    def summary(self) -> dict:
        def stat(values: list[float]) -> dict:
            return {"p50_ms": round(statistics.median(values) * 1000), "p95_ms": round(percentile(values, 95) * 1000)}

        rows = self.rows
        if not rows:
            return {"probes": 0}
        return {"probes": len(rows), "post": stat([r["post_s"] for r in rows]),
                "sent_to_hot_tier": stat([r["hot_s"] for r in rows]),
                "after_post_to_hot_tier": stat([r["hot_s"] - r["post_s"] for r in rows]),
                "hot_tier_to_api": stat([max(0.0, r["api_s"] - r["hot_s"]) for r in rows]),
                "sent_to_api": stat([r["api_s"] for r in rows])}


_SINK = re.compile(r"batch \d+: ([\d,]+) events .* in ([\d.]+)s \(read\+dedup ([\d.]+)s, rollup ([\d.]+)s, "
                   r"insert ([\d.]+)s\); hot node: closed-through (\d+)ms, events_raw (\d+)ms, "
                   r"rollups_1m (\d+)ms, marks (\d+)ms")
_SPARK = re.compile(r"progress hot batch \d+: ([\d,]+) records in ([\d.]+)s \(addBatch ([\d.]+)s, offsets\+planning "
                    r"([\d.]+)s, walCommit\+commitOffsets ([\d.]+)s(?:; dedup state: updates ([\d.]+)s, removals "
                    r"([\d.]+)s, commit ([\d.]+)s[^)]*)?\).*?(?:; progress row (\d+)ms)?$", re.M)


def micro_batch_split(settings, log_start: int) -> dict:
    """Median milliseconds per part of the hot query's micro-batches, from the stream log (lines of this phase): the
    sink's own split (``HotTierWriter``) and Spark's (``stage_split``, logged for every batch when the stream runs
    with ``STAGE_LOG_RECORDS`` 0)."""
    log = settings.home / "logs" / "stream.log"
    text = log.read_bytes()[log_start:].decode("utf-8", "replace") if log.exists() else ""
    sink = [m.groups() for m in _SINK.finditer(text)]
    spark = [m.groups() for m in _SPARK.finditer(text)]

    def med(values: list[float]) -> float | None:
        return round(statistics.median(values), 1) if values else None

    names = ("events", "sink_total", "to_arrow_read_dedup", "rollup", "inserts_and_marks", "closed_through",
             "events_raw", "rollups_1m", "marks")
    scale = (1, 1000, 1000, 1000, 1000, 1, 1, 1, 1)
    split = {"batches": len(sink)}
    for i, (name, k) in enumerate(zip(names, scale, strict=True)):
        split[f"{name}{'' if name == 'events' else '_ms'}"] = med([float(g[i].replace(",", "")) * k for g in sink])
    if spark:
        split["spark"] = {"batches": len(spark),
                          "trigger_execution_ms": med([float(g[1]) * 1000 for g in spark]),
                          "add_batch_ms": med([float(g[2]) * 1000 for g in spark]),
                          "offsets_planning_ms": med([float(g[3]) * 1000 for g in spark]),
                          "wal_commit_offsets_ms": med([float(g[4]) * 1000 for g in spark]),
                          "dedup_state_updates_ms": med([float(g[5]) * 1000 for g in spark if g[5]]),
                          "dedup_state_removals_ms": med([float(g[6]) * 1000 for g in spark if g[6]]),
                          "dedup_state_commit_ms": med([float(g[7]) * 1000 for g in spark if g[7]]),
                          "progress_row_ms": med([float(g[8]) for g in spark if g[8]])}
    return split


def bench_paced_freshness(settings, store, rate: int, seconds: int, query_clients: int = 0) -> dict:
    """Freshness at a steady ``rate`` the stream sustains: what a dashboard sees in normal operation; with
    ``query_clients``, while that many clients ask uncached 90-day questions all along."""
    from contextlib import nullcontext

    templates = EventTemplates()

    post_ms: list[float] = []

    def paced(http: httpx.Client, duration: float) -> None:
        started = time.perf_counter()
        while time.perf_counter() - started < duration:
            tick = time.perf_counter()
            for _ in range(max(1, rate // 1000)):
                t0 = time.perf_counter()
                http.post("/events", content=templates.body(1000), headers={"content-type": "application/json"})
                post_ms.append((time.perf_counter() - t0) * 1000)
            time.sleep(max(0.0, 1.0 - (time.perf_counter() - tick)))

    log = settings.home / "logs" / "stream.log"
    with httpx.Client(base_url=settings.api_url, timeout=60, headers=admin_headers(settings)) as http:
        paced(http, 15)  # warm-up: the stream's first micro-batches carry Spark's JIT, not steady state
        post_ms.clear()
        log_start = log.stat().st_size if log.exists() else 0
        queries = UncachedQueries(settings, query_clients) if query_clients else nullcontext()
        phase_started = datetime.now(UTC)
        with queries, FreshnessProbe(settings.api_url, headers=admin_headers(settings)) as probe, \
                SplitProbe(settings, store) as split:
            paced(http, seconds)
    fresh = probe.summary()
    return {"rate_events_per_s": rate, "seconds": seconds, "freshness_p50_s": fresh["p50_s"],
            "freshness_p95_s": fresh["p95_s"], "freshness_p99_s": fresh["p99_s"],
            "freshness_probes": fresh["probes"], "freshness_timeouts": fresh["timeouts"],
            "split_probes": split.summary(), "micro_batches": micro_batch_split(settings, log_start),
            "queries": query_split(store, phase_started),  # the hot query's busy share; what the others took
            "hot_busy_share": hot_busy_share(store, phase_started),
            "paced_post_p50_ms": round(statistics.median(post_ms), 1) if post_ms else None,
            **({"uncached_queries": queries.summary()} if query_clients else {})}


def wait_drained(store, expected: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while hot_count(store) < expected and time.monotonic() < deadline:
        time.sleep(1)


def bench_api(settings, seconds: int, clients: int, batch: int = 1000, sync: bool = True) -> dict:
    templates = EventTemplates()
    stop = threading.Event()
    accepted = [0] * clients
    latencies: list[float] = []

    def client(k: int) -> None:
        with httpx.Client(base_url=settings.api_url, timeout=60, headers=admin_headers(settings)) as http:
            while not stop.is_set():
                body = templates.body(batch)
                t0 = time.perf_counter()
                r = http.post("/events", content=body, headers={"content-type": "application/json"},
                              params={"sync": str(sync).lower()})
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()
                accepted[k] += r.json()["accepted"]

    with FreshnessProbe(settings.api_url, interval_s=1.0, headers=admin_headers(settings)) as probe:
        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        while time.perf_counter() - started < seconds:
            time.sleep(10)
            print(f"   {time.perf_counter() - started:5.0f}s  {sum(accepted):,} accepted "
                  f"({sum(accepted) / (time.perf_counter() - started):,.0f}/s), probes {len(probe.latencies)}")
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    fresh = probe.summary()
    return {
        "mode": "sync" if sync else "async", "seconds": round(elapsed, 1), "clients": clients, "batch_size": batch,
        "accepted": sum(accepted),
        "api_events_per_s": round(sum(accepted) / elapsed),
        "request_p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "request_p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "freshness_p50_s": fresh["p50_s"], "freshness_p95_s": fresh["p95_s"], "freshness_p99_s": fresh["p99_s"],
        "freshness_probes": fresh["probes"], "freshness_timeouts": fresh["timeouts"],
    }


def bench_stack(fresh: bool) -> tuple[Any, Any]:
    """The benches' own stack (home ``.lakehouse/bench``, ports of ``BENCH_ENV``): settings and stack, its data
    wiped first when ``fresh``. The environment is set before the settings are read, as the stack's processes
    read theirs from it."""
    repo = Path(__file__).resolve().parents[1]
    os.environ.update({**BENCH_ENV, "LAKEHOUSE_HOME": str(repo / ".lakehouse" / "bench")})
    from common.settings import Settings
    from stack.app_services import full_stack

    settings = Settings()
    stack = full_stack(settings)
    if fresh:
        stack.down()
        import shutil

        shutil.rmtree(settings.home, ignore_errors=True)
    return settings, stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--kafka-events", type=int, default=3_000_000)
    parser.add_argument("--kafka-hours", type=float, default=0,
                        help="spread the Kafka phase's event times over this many hours (0: a few minutes)")
    parser.add_argument("--paced-rate", type=int, default=5000, help="events/s of the freshness phase")
    parser.add_argument("--paced-seconds", type=int, default=60)
    parser.add_argument("--fresh", action="store_true", help="wipe the bench stack's data first")
    parser.add_argument("--only", default="paced,kafka,api", help="phases to run, comma-separated (also: "
                        "paced-queries, the paced phase again while --query-clients ask uncached 90-day series)")
    parser.add_argument("--query-clients", type=int, default=20, help="clients of the paced-queries phase")
    parser.add_argument("--api-modes", default="sync,async", help="acknowledgement modes of the API phase")
    parser.add_argument("--label", default="", help="appended to the results file's name (e.g. before/after a change)")
    parser.add_argument("--jvm-profile", action="store_true",
                        help="record the stream's JVM (Java Flight Recorder) and add where its time went, by stage "
                             "and part, to the Kafka phase's figures (bench.jvm_profile)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    recording = None
    if args.jvm_profile:
        if "kafka" not in args.only.split(","):
            parser.error("--jvm-profile profiles the Kafka phase: add kafka to --only")
        if "extraJavaOptions" in os.environ.get("LAKEHOUSE_SPARK_CONF", ""):
            parser.error("--jvm-profile sets spark.driver.extraJavaOptions; LAKEHOUSE_SPARK_CONF sets it already")
        recording = Path(__file__).resolve().parents[1] / ".lakehouse" / "stream.jfr"
        recording.unlink(missing_ok=True)
        os.environ["LAKEHOUSE_SPARK_CONF"] = ";".join(
            c for c in (os.environ.get("LAKEHOUSE_SPARK_CONF", ""), jvm_profile.recording_conf(recording)) if c)

    from common.hot_store import FlightHotStore

    settings, stack = bench_stack(args.fresh)
    if "paced" in args.only.split(",") and Path(settings.effective_checkpoint_dir).exists():
        print("== note: the bench stack holds an earlier run's stream state; the paced phase then includes its "
              "clean-up (the de-duplication forgetting millions of ids at once): --fresh for comparable figures")
    print("== starting the bench stack")
    try:
        stack.up()
        store = FlightHotStore.for_settings(settings)
        # Paced freshness first, on a fresh stream: it is what a dashboard sees in normal operation, and
        # the deduplication state that the throughput phases build (millions of ids) would slow it.
        phases = set(args.only.split(","))
        paced = kafka = None
        if "paced" in phases:
            print(f"== freshness at a paced {args.paced_rate:,} events/s for {args.paced_seconds}s")
            with MemorySampler(settings.home) as memory:
                paced = bench_paced_freshness(settings, store, args.paced_rate, args.paced_seconds)
            paced["memory"] = memory.report()
            print(f"   {paced}\n   {memory.summary()}")
        paced_queries = None
        if "paced-queries" in phases:
            print(f"== freshness at a paced {args.paced_rate:,} events/s for {args.paced_seconds}s while "
                  f"{args.query_clients} clients ask uncached 90-day series")
            with MemorySampler(settings.home) as memory:
                paced_queries = bench_paced_freshness(settings, store, args.paced_rate, args.paced_seconds,
                                                      args.query_clients)
            paced_queries["memory"] = memory.report()
            print(f"   {paced_queries}\n   {memory.summary()}")
        if "kafka" in phases:
            print(f"== Kafka → hot tier: {args.kafka_events:,} events produced straight to Kafka, then drained")
            stack.down(["stream"])
            with MemorySampler(settings.home) as memory:
                kafka = bench_kafka_to_hot(settings, stack, store, args.kafka_events, args.kafka_hours)
            kafka["memory"] = memory.report()
            print(f"   {kafka}\n   {memory.summary()}")
            if recording is not None:
                stack.down(["stream"])  # the JVM writes its recording as it exits
                jvm_profile.wait_written(recording)
                jvm_us = next((us for name, us in kafka["cpu_per_event"]["stream_processes_us"].items()
                               if "java" in name), None)
                kafka["jvm_profile"] = jvm_profile.split(recording, jvm_us)
                print(jvm_profile.printed(kafka["jvm_profile"]))
        apis = []
        for mode in args.api_modes.split(",") if "api" in phases else []:
            print(f"== API → hot tier ({mode}): {args.clients} clients posting 1,000-event batches for {args.seconds}s")
            before_api = hot_count(store)
            with MemorySampler(settings.home) as memory:
                api = bench_api(settings, args.seconds, args.clients, sync=mode == "sync")
                print(f"   {api}")
                print("== waiting for the stream to drain the API run's backlog")
                drain_started = time.perf_counter()
                wait_drained(store, before_api + api["accepted"])
                api["drain_after_run_s"] = round(time.perf_counter() - drain_started, 1)
            api["memory"] = memory.report()  # the run and the drain
            print(f"   {memory.summary()}")
            apis.append(api)
        result = {
            "benchmark": "freshness_throughput",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "command": "python -m bench.freshness_throughput " + " ".join(
                f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
                for k, v in vars(args).items() if v not in (False, None)),
            "kafka_to_hot": kafka,
            "api_max_rate": apis[0] if len(apis) == 1 else apis,
            "api_paced": paced,
            "api_paced_under_uncached_queries": paced_queries,
            "spark_conf": settings.spark_conf,  # LAKEHOUSE_SPARK_CONF of the run (e.g. an old setting for comparison)
            "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        }
        target = RESULTS if phases == {"paced", "kafka", "api"} else RESULTS.with_name(
            f"freshness_throughput-{'-'.join(sorted(phases))}.json")  # a partial run keeps the full run's figures
        if args.label:
            target = target.with_name(f"{target.stem}-{args.label}.json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, indent=2) + "\n")
        print(f"== written to {target}")
    finally:
        print("== stopping the bench stack")
        stack.down()
    print(f"== {stack.confirm_stopped()}")  # raises, naming them, if any process of the bench home is left


if __name__ == "__main__":
    main()
