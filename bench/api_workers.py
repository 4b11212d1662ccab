"""Benchmark: the API as one process (which is also the hot node) against a hot node and N API workers.

Side by side in one run, on one stack of its own (home ``.lakehouse/bench-workers``, the bench ports of
``BENCH_ENV``): Kafka and Redis stay up, and for each mode of ``--modes`` (``0`` = one process, as before;
``N`` = ``lakehouse hot-node`` plus ``lakehouse serve --workers N``) the API is started, then measured:

1. cached throughput: ``--clients`` concurrent keep-alive connections cycling over the three cached 7-day
   widgets of ``bench.dashboard_latency`` for ``--seconds`` (requests/s, latency percentiles, the API
   processes' CPU time per request read from /proc, the hot node's CPU time over the same phase);
2. API → Kafka ingestion: ``--ingest-clients`` threads posting 1,000-event batches (``sync``: answered after
   Kafka's acks) for ``--seconds`` (events/s, request latency, CPU per 1,000 events).

The hot tier is loaded once (``--events`` over 7 days for one tenant, straight into the hot tier as
``bench.dashboard_latency`` does). The stream job is not run: neither phase needs it, and its Spark JVM
would take the CPUs the API is measured on. Every figure has the 1-minute load average beside it, and
the ratios new ÷ old (each worker mode against the one-process run before it) are printed and stored:
on a shared 2-core machine the ratios are what a reader can compare.

Usage: ``python -m bench.api_workers [--modes 0,2,0,2] [--events 300000] [--clients 50] [--seconds 10]``.
Figures are printed and written to ``bench/results/api_workers.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.dashboard_latency import load, percentiles, prepare, process_cpu_seconds, sequential, throughput, widgets
from bench.freshness_throughput import BENCH_ENV, EventTemplates, admin_headers
from bench.memory import MemorySampler

RESULTS = Path(__file__).resolve().parent / "results" / "api_workers.json"


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (the API's workers; Python's resource tracker is idle and counted too)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(c) for c in children)]


def tree_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone meanwhile
            total += process_cpu_seconds(pid)
    return total


def load_average() -> float:
    return round(os.getloadavg()[0], 1)


def cached_phase(settings, tenant: str, clients: int, seconds: float, api: list[int], hot_node: int | None) -> dict:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=7)
    host, port, key = settings.api_host, settings.api_port, settings.admin_key
    requests = [prepare(host, path, params, key) for path, params in widgets(tenant, start, end).values()]
    asyncio.run(sequential(host, port, requests * 3, {"miss", "hit", "coalesced"}))  # filled, every worker warm
    cpu0, hot0 = tree_cpu_seconds(api), tree_cpu_seconds([hot_node]) if hot_node else 0.0
    out = asyncio.run(throughput(host, port, requests, clients, seconds))
    cpu, hot = tree_cpu_seconds(api) - cpu0, (tree_cpu_seconds([hot_node]) - hot0) if hot_node else None
    out["api_cpu_us_per_request"] = round(cpu / out["requests"] * 1e6)
    out["hot_node_cpu_s"] = None if hot is None else round(hot, 2)
    out["load_average_1m_after"] = load_average()
    return out


def ingest_phase(settings, clients: int, seconds: float, api: list[int]) -> dict:
    templates = EventTemplates()
    stop = threading.Event()
    accepted = [0] * clients
    latencies: list[float] = []
    failures: list[str] = []

    def client(k: int) -> None:
        with httpx.Client(base_url=settings.api_url, timeout=60, headers=admin_headers(settings)) as http:
            while not stop.is_set():
                body = templates.body(1000)
                t0 = time.perf_counter()
                r = http.post("/events", content=body, headers={"content-type": "application/json"})
                latencies.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:100]}")
                    continue
                accepted[k] += r.json()["accepted"]

    cpu0 = tree_cpu_seconds(api)
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    cpu = tree_cpu_seconds(api) - cpu0
    return {"clients": clients, "batch_size": 1000, "seconds": round(wall, 1), "accepted": sum(accepted),
            "api_events_per_s": round(sum(accepted) / wall), "failures": len(failures), "first_failures": failures[:3],
            "request_latency": percentiles(latencies) if latencies else None,
            "api_cpu_ms_per_1000_events": round(cpu / max(1, sum(accepted)) * 1e6, 2),
            "load_average_1m_after": load_average()}


# A mode's suffix ``old``: the per-request fast paths off (cached GETs through FastAPI's parameter handling,
# every event through the full contract), as before them; the same worker count without it has them on.
OLD_PATHS = {"LAKEHOUSE_FAST_CACHED_READS": "false", "LAKEHOUSE_INGEST_FAST_CONTRACT": "false"}
NEW_PATHS = {"LAKEHOUSE_FAST_CACHED_READS": "true", "LAKEHOUSE_INGEST_FAST_CONTRACT": "true"}


def run_mode(mode: str, base_env: dict[str, str], args: argparse.Namespace, tenant: str, loaded: list) -> dict:
    old = mode.endswith("old")
    workers = int(mode.removesuffix("old"))
    os.environ.update({**base_env, "LAKEHOUSE_API_WORKERS": str(workers), **(OLD_PATHS if old else NEW_PATHS)})
    from common.hot_store import FlightHotStore
    from common.settings import Settings
    from stack.app_services import app_services, full_stack
    from stack.process import read_pid

    settings = Settings()
    stack = full_stack(settings)
    names = app_services(settings)
    print(f"== mode {mode}: {'one process (API and hot node)' if not workers else f'hot node + {workers} workers'}"
          f"{', fast paths off' if old else ''}")
    t0 = time.perf_counter()
    stack.up(names)
    out: dict[str, Any] = {"api_workers": workers, "fast_paths": not old, "services": names,
                           "start_s": round(time.perf_counter() - t0, 1)}
    try:
        if not loaded:
            print(f"   loading {args.events:,} events over 7 days for tenant {tenant}")
            loaded.append(load(FlightHotStore.for_settings(settings), tenant, args.events, datetime.now(UTC)))
        api = process_tree(read_pid(settings.home / "run" / "api.pid").pid)
        hot = read_pid(settings.home / "run" / "hot-node.pid") if workers else None
        out["load_average_1m_before"] = load_average()
        out["cached"] = cached_phase(settings, tenant, args.clients, args.seconds, api, hot.pid if hot else None)
        cached = out["cached"]
        print(f"   cached, {args.clients} clients: {cached['requests_per_s']:,} requests/s, "
              f"p50 {cached['latency']['p50_ms']} ms, p99 {cached['latency']['p99_ms']} ms, "
              f"{cached['api_cpu_us_per_request']} µs API CPU/request (load {cached['load_average_1m_after']})")
        out["ingest"] = ingest_phase(settings, args.ingest_clients, args.seconds, api)
        print(f"   ingest, {args.ingest_clients} clients × 1,000-event batches: {out['ingest']['api_events_per_s']:,} "
              f"events/s, p99 {out['ingest']['request_latency']['p99_ms']} ms, failures {out['ingest']['failures']} "
              f"(load {out['ingest']['load_average_1m_after']})")
    finally:
        stack.down(names)
    return out


def ratios(modes: list[dict]) -> list[dict]:
    """Each worker mode against the one-process run just before it (``--modes 0,2,0,2`` gives two pairs, so a
    load that drifts during the run shows as two different ratios rather than hiding in one)."""
    out = []
    base = None
    for index, mode in enumerate(modes):
        before = modes[index - 1] if index else None
        if (before is not None and mode["fast_paths"] and not before["fast_paths"]
                and before["api_workers"] == mode["api_workers"]):
            out.append({"run": index, "api_workers": mode["api_workers"],
                        "vs": "the same processes with the fast paths off, the run before",
                        **_ratio_fields(mode, before)})
            continue
        if mode["api_workers"] == 0:
            base = mode
            continue
        if base is None:
            continue
        out.append({
            "run": index, "api_workers": mode["api_workers"], "vs": "one process (api_workers=0), the run before",
            **_ratio_fields(mode, base),
        })
    return out


def _ratio_fields(mode: dict, base: dict) -> dict:
    return {
        "cached_requests_per_s": round(mode["cached"]["requests_per_s"] / base["cached"]["requests_per_s"], 2),
        "cached_p99": round(mode["cached"]["latency"]["p99_ms"] / base["cached"]["latency"]["p99_ms"], 2),
        "cached_api_cpu_per_request": round(mode["cached"]["api_cpu_us_per_request"]
                                            / base["cached"]["api_cpu_us_per_request"], 2),
        "ingest_events_per_s": round(mode["ingest"]["api_events_per_s"] / base["ingest"]["api_events_per_s"], 2),
        "ingest_api_cpu_per_event": round(mode["ingest"]["api_cpu_ms_per_1000_events"]
                                          / base["ingest"]["api_cpu_ms_per_1000_events"], 2),
        "load_average_1m": [base["load_average_1m_before"], mode["load_average_1m_before"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default="0,2,0,2", help="comma-separated API worker counts; 0 = one process; "
                        "a suffix `old` (e.g. 2old,2,2old,2) turns the per-request fast paths off for that run")
    parser.add_argument("--out", default=str(RESULTS), help="where the figures are written")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--ingest-clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    repo = Path(__file__).resolve().parents[1]
    home = repo / ".lakehouse" / "bench-workers"
    base_env = {**BENCH_ENV, "LAKEHOUSE_HOME": str(home), "LAKEHOUSE_ALERT_INTERVAL_SECONDS": "0",
                "LAKEHOUSE_KAFKA_TOPIC": f"bench-workers-{uuid.uuid4().hex[:6]}"}
    os.environ.update(base_env)
    from common.settings import Settings
    from stack.app_services import full_stack

    infra = full_stack(Settings())
    infra.down()  # a fresh home: nothing left over from an earlier run
    infra.up(["kafka", "redis"])
    memory = MemorySampler(home).start()
    tenant = f"bench-workers-{uuid.uuid4().hex[:8]}"
    loaded: list = []
    try:
        modes = [run_mode(m.strip(), base_env, args, tenant, loaded) for m in args.modes.split(",")]
    finally:
        memory.stop()
        infra.down(["redis", "kafka"])
        print(f"== {infra.confirm_stopped()}")
    result = {
        "benchmark": "api_workers",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()]},
        "command": "python -m bench.api_workers " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "load": loaded[0] if loaded else None,
        "modes": modes,
        "ratios": ratios(modes),
        "memory": memory.report(),
        "targets": {"cached_requests_per_s": 5000, "cached_p99_ms": 20, "api_events_per_s": 75000},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ratios"], indent=2))
    print(f"== written to {out}")


if __name__ == "__main__":
    main()
