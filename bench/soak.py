"""Soak: is the hot node's memory flat under a steady ingest and query load?

Runs the bench stack (home ``.lakehouse/bench``, as ``bench.freshness_throughput``) with the stream,
posts ``--rate`` events/s through ``POST /events`` and asks ``--qps`` dashboard questions a second
(time series, breakdown and top-N over the last hour, ``to`` moving with the clock so most answers
are computed, not cached), while ``bench.memory`` samples every process's resident memory. After a
warm-up (caches, Spark's JIT, the first parts of the tables), the API/hot node's RSS is fitted with a
least-squares line: its slope in MiB per minute, and "flat" when that slope would add less than
``--flat-percent`` (default 5 %) of the node's memory in an hour. Its anonymous part (RSS less file pages:
chDB's library is 400+ MB and its code faults in as new query shapes run) is fitted the same way, since that is
where a leak shows. To tell which part grows, the node's own ``/metrics`` is read every 30 s: the engine's tracked
bytes, caches, parts and allocator, glibc's heap and Arrow's pool, each with its slope after the warm-up. Those
are what the libraries count; the kernel's side comes from the node's mappings (``/proc/<pid>/smaps``, every 30 s):
RSS in chDB's library, other files, the brk heap, thread stacks and other anonymous memory, and the groups of
mappings that grew most from the end of the warm-up to the end of the run.

It also shows whether the speed layer stays as fresh after half an hour as after a minute: a freshness probe (one
event a second, sent → visible in ``GET /v1/timeseries``) runs all along, and per ``--window-minutes`` window the
report gives its p50/p95 beside the hot query's micro-batches (median duration and events, ``stream_progress``).

Usage: ``python -m bench.soak [--minutes 2] [--rate 2000] [--qps 5] [--fresh] [--label L]``; the issue's soak is
``--minutes 45 --warmup-minutes 15``: the node fills for about 15 minutes (chDB's threads and allocator, the caches),
so that fits 30 minutes of steady state. Figures are printed and written to ``bench/results/soak.json``
(``soak-<L>.json`` with ``--label``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.freshness_throughput import EventTemplates, admin_headers, bench_stack
from bench.memory import MappingSampler, MemorySampler, slope_per_minute
from common import procfs
from demo.load import FreshnessProbe, percentile
from stack import process

RESULTS = Path(__file__).resolve().parent / "results"
QUESTIONS = (
    ("/v1/timeseries", {"metric": "events", "granularity": "minute"}),
    ("/v1/breakdown", {"metric": "events", "by": "country"}),
    ("/v1/topn", {"metric": "page_views", "by": "page", "n": "10"}),
)


class Load:
    """Steady ingest (``rate`` events/s in 1,000-event requests) and dashboard questions (``qps``/s)."""

    def __init__(self, settings, rate: int, qps: float) -> None:
        self.settings, self.rate, self.qps = settings, rate, qps
        self.stop = threading.Event()
        self.sent = self.queries = 0
        self.errors: dict[str, int] = {}
        self.query_ms: list[float] = []
        self._threads = [threading.Thread(target=self._ingest, daemon=True)]
        if qps > 0:  # 0: ingest only
            self._threads.append(threading.Thread(target=self._ask, daemon=True))

    def _count_error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.settings.api_url, timeout=60, headers=admin_headers(self.settings))

    def _ingest(self) -> None:
        templates = EventTemplates()
        batch = min(1000, self.rate)
        with self._client() as http:
            while not self.stop.is_set():
                tick = time.perf_counter()
                for _ in range(max(1, self.rate // batch)):
                    try:
                        r = http.post("/events", content=templates.body(batch),
                                      headers={"content-type": "application/json"})
                        r.raise_for_status()
                        self.sent += r.json()["accepted"]
                    except httpx.HTTPError as exc:
                        self._count_error(f"ingest: {type(exc).__name__}")
                self.stop.wait(max(0.0, 1.0 - (time.perf_counter() - tick)))

    def _ask(self) -> None:
        with self._client() as http:
            k = 0
            while not self.stop.is_set():
                tick = time.perf_counter()
                path, params = QUESTIONS[k % len(QUESTIONS)]
                end = datetime.now(UTC).replace(microsecond=0)
                window = {"tenant": "acme", "from": (end - timedelta(hours=1)).isoformat(), "to": end.isoformat()}
                try:
                    http.get(path, params={**params, **window}).raise_for_status()
                    self.query_ms.append((time.perf_counter() - tick) * 1000)
                    self.queries += 1
                except httpx.HTTPError as exc:
                    self._count_error(f"query: {type(exc).__name__}")
                k += 1
                self.stop.wait(max(0.0, 1.0 / self.qps - (time.perf_counter() - tick)))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join()


class HeapParts:
    """Every ``interval_s``, the hot node's memory by part from its ``/metrics`` (the engine's caches, tracked
    bytes and allocator; glibc's heap; Arrow's pool): which of them grows when the node's RSS does."""

    FAMILIES = ("lakehouse_hot_engine_memory", "lakehouse_process_heap_bytes", "lakehouse_process_objects")
    COUNTS = ("ActiveParts", "OutdatedParts", "python_blocks", "threads")  # not bytes

    def __init__(self, settings, interval_s: float = 30.0) -> None:
        self.settings, self.interval_s = settings, interval_s
        self.series: dict[str, list[tuple[float, float]]] = {}  # part -> (seconds since start, MiB or count)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def _run(self) -> None:
        with httpx.Client(base_url=self.settings.api_url, timeout=30, headers=admin_headers(self.settings)) as http:
            while not self._stop.wait(self.interval_s):
                try:
                    text = http.get("/metrics").text
                except httpx.HTTPError:
                    continue
                at = round(time.monotonic() - self._started, 1)
                for family in text_string_to_metric_families(text):
                    if family.name not in self.FAMILIES:
                        continue
                    for sample in family.samples:
                        part = sample.labels.get("part") or sample.labels["kind"]
                        scale = 1 if part in self.COUNTS else 1 / 2**20
                        self.series.setdefault(part, []).append((at, sample.value * scale))

    def report(self, warmup_s: float) -> dict[str, dict]:
        """Per part: its value after the warm-up and at the end, and its fitted slope per minute."""
        out = {}
        for part, points in sorted(self.series.items()):
            after = [(t, v) for t, v in points if t >= warmup_s]
            if len(after) >= 2:
                out[part] = {"first": round(after[0][1], 2), "last": round(after[-1][1], 2),
                             "per_min": round(slope_per_minute(after), 3)}
        return out

    def __enter__(self) -> HeapParts:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def hot_node_pid(settings) -> int | None:
    """The hot node's process: the largest of its service's process group (the API's, or ``hot-node``'s when the
    node runs apart from the API's workers)."""
    for service in ("hot-node", "api"):
        record = process.read_pid(settings.home / "run" / f"{service}.pid")
        if record is None:
            continue
        sizes = [(procfs.resident_kib(p.pid) or 0, p.pid) for p in procfs.group_members(record.pid) if not p.gone]
        if sizes:
            return max(sizes)[1]
    return None


def flatness(points: list[tuple[float, int]], warmup_s: float, flat_percent: float) -> dict:
    """The fitted slope of ``points`` (seconds, KiB) after ``warmup_s``, and whether it is flat."""
    steady = [(t, kib / 1024) for t, kib in points if t >= warmup_s]
    if len(steady) < 3:
        return {"flat": None, "why": f"only {len(steady)} samples after the warm-up; run longer"}
    slope = slope_per_minute(steady)
    mean = statistics.fmean(v for _, v in steady)
    per_hour_percent = slope * 60 / mean * 100
    return {"samples": len(steady), "from_s": steady[0][0], "to_s": steady[-1][0],
            "mean_mib": round(mean, 1), "min_mib": round(min(v for _, v in steady), 1),
            "max_mib": round(max(v for _, v in steady), 1), "slope_mib_per_min": round(slope, 2),
            "growth_per_hour_percent": round(per_hour_percent, 2), "flat": per_hour_percent < flat_percent,
            "slope_by_third_mib_per_min": slopes_by_part(steady, 3)}


def slopes_by_part(points: list[tuple[float, float]], parts: int) -> list[float]:
    """The slope of each consecutive ``parts``-th of ``points``: a falling slope is a cache filling up to its
    size (or tables growing), a constant one under a constant load is what a leak looks like."""
    size = len(points) // parts
    if size < 3:
        return []
    return [round(slope_per_minute(points[i * size:(i + 1) * size]), 2) for i in range(parts)]


def by_window(probe: FreshnessProbe, store, started: datetime, window_s: float) -> list[dict]:
    """Per window of ``window_s`` since ``started``: the probe's freshness and the hot query's micro-batches."""
    batches = store.query_arrow(
        "SELECT toUnixTimestamp64Milli(finished_at) / 1000 AS at, duration_ms, input_rows FROM stream_progress "
        f"WHERE query_name = 'hot' AND input_rows > 0 AND finished_at >= toDateTime64('{started:%Y-%m-%d %H:%M:%S}', "
        "3, 'UTC')").to_pylist()
    windows: list[dict] = []
    begin, end = started.timestamp(), max([*probe.sent_at, *(b["at"] for b in batches), started.timestamp()])
    while begin < end:
        fresh = [lat for at, lat in zip(probe.sent_at, probe.latencies, strict=True) if begin <= at < begin + window_s]
        hot = [b for b in batches if begin <= b["at"] < begin + window_s]
        windows.append({
            "from_min": round((begin - started.timestamp()) / 60, 1),
            "freshness_p50_s": round(statistics.median(fresh), 2) if fresh else None,
            "freshness_p95_s": round(percentile(fresh, 95), 2) if fresh else None, "probes": len(fresh),
            "hot_batches": len(hot),
            "hot_batch_median_s": round(statistics.median(b["duration_ms"] for b in hot) / 1000, 2) if hot else None,
            "hot_batch_median_records": statistics.median(b["input_rows"] for b in hot) if hot else None})
        begin += window_s
    return windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the load (the real soak: 30)")
    parser.add_argument("--rate", type=int, default=2000, help="events/s posted")
    parser.add_argument("--qps", type=float, default=5.0, help="dashboard questions a second")
    parser.add_argument("--warmup-minutes", type=float, default=None,
                        help="samples before this are not fitted (default: a quarter of the run, at most 5)")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--flat-percent", type=float, default=5.0, help="flat: less growth per hour than this")
    parser.add_argument("--fresh", action="store_true", help="wipe the bench stack's data first")
    parser.add_argument("--window-minutes", type=float, default=5.0, help="freshness and hot batches per window")
    parser.add_argument("--label", default="", help="written to bench/results/soak-<label>.json (default soak.json)")
    args = parser.parse_args()
    warmup_min = args.warmup_minutes if args.warmup_minutes is not None else min(5.0, args.minutes / 4)

    settings, stack = bench_stack(args.fresh)
    print("== starting the bench stack")
    try:
        stack.up()
        print(f"== soak: {args.rate:,} events/s and {args.qps:g} questions/s for {args.minutes:g} min "
              f"(warm-up {warmup_min:g} min not fitted)")
        started, started_at = time.monotonic(), datetime.now(UTC)
        with MemorySampler(settings.home, interval_s=args.sample_seconds) as memory, \
                Load(settings, args.rate, args.qps) as load, HeapParts(settings) as heap_parts, \
                MappingSampler(lambda: hot_node_pid(settings), warmup_min * 60) as mappings, \
                FreshnessProbe(settings.api_url, headers=admin_headers(settings)) as probe:
            while (elapsed := time.monotonic() - started) < args.minutes * 60:
                time.sleep(min(30.0, args.minutes * 60 - elapsed))
                recent = probe.latencies[-30:]
                print(f"   {elapsed / 60:5.1f} min  {load.sent:,} events, {load.queries:,} questions, "
                      f"errors {load.errors or 0}; freshness (last 30 probes) p50 "
                      f"{statistics.median(recent) if recent else float('nan'):.1f}s; {memory.summary()}")
        from common.hot_store import FlightHotStore

        windows = by_window(probe, FlightHotStore.for_settings(settings), started_at, args.window_minutes * 60)
        api = flatness(memory.series.get("api", []), warmup_min * 60, args.flat_percent)
        api_anon = flatness(memory.anon_series.get("api", []), warmup_min * 60, args.flat_percent)
        report = memory.report()
        result = {
            "benchmark": "soak",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()]},
            "command": f"python -m bench.soak --minutes {args.minutes:g} --warmup-minutes {warmup_min:g} "
                       f"--rate {args.rate} --qps {args.qps:g}",
            "load": {"events_sent": load.sent, "events_per_s": round(load.sent / (args.minutes * 60)),
                     "questions": load.queries, "question_p50_ms": round(statistics.median(load.query_ms), 1)
                     if load.query_ms else None, "errors": load.errors},
            "freshness": probe.summary(),
            "by_window": windows,
            "hot_node_rss": api,
            "hot_node_anonymous_rss": api_anon,
            "hot_node_parts_mib": heap_parts.report(warmup_min * 60),  # HeapParts.COUNTS are counts
            "hot_node_mappings": mappings.report(),
            "hot_node_parts_series": {part: [(t, round(v, 2)) for t, v in points]
                                      for part, points in heap_parts.series.items()},
            "slopes_mib_per_min": {service: round(slope_per_minute(
                [(t, kib / 1024) for t, kib in points if t >= warmup_min * 60]), 2)
                for service, points in memory.series.items()},
            "memory": report,
            "series_mib": {service: [(t, round(kib / 1024, 1)) for t, kib in points]
                           for service, points in memory.series.items()},
        }
        results = RESULTS / (f"soak-{args.label}.json" if args.label else "soak.json")
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(result, indent=2) + "\n")
        for window in windows:
            print(f"   from minute {window['from_min']:5.1f}: {window}")
        print(f"== hot node RSS after the warm-up: {api}")
        print(f"== its anonymous part (no file pages such as chDB's 400 MB library faulting in): {api_anon}")
        for part, figures in result["hot_node_parts_mib"].items():
            print(f"   hot node part {part:26s} {figures}")
        print(f"== hot node by mapping (smaps): {json.dumps(result['hot_node_mappings'], indent=1)}")
        print(f"== slopes (MiB/min) per service: {result['slopes_mib_per_min']}")
        print(f"== written to {results}")
    finally:
        print("== stopping the bench stack")
        stack.down()
    print(f"== {stack.confirm_stopped()}")


if __name__ == "__main__":
    main()
