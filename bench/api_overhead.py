"""The API's own CPU per request, in process: cached dashboard reads and event ingestion, old path against new.

`python -m bench.api_overhead [--requests 2000] [--rounds 5] [--events 1000] [--batches 30]`

No HTTP server and no load generator: requests are handed to the ASGI app directly (as uvicorn would, minus
its HTTP parsing, which is the same for both paths), so the figures are the application's cost alone and do
not move with what else runs on the machine as much as a throughput run does. Two measures, side by side in
one run, alternating old and new:

* function calls per request, counted by cProfile over all requests (a count: robust to a loaded machine);
* CPU microseconds per request (``time.process_time`` around the same requests, without the profiler),
  median of ``--rounds`` rounds.

Cached reads: the three 7-day widgets of the dashboard benchmark (``GET /v1/timeseries``, ``/breakdown``,
``/topn`` with an absolute window, the admin key), each filled once, then answered from a real Redis
(started here on a free port) by two apps over the same hot store and cache: one
with ``fast_cached_reads`` off (every request through FastAPI's routing, dependencies and validation, as
before) and one with it on. Both apps' answers are compared byte for byte.

Ingestion: ``POST /events`` with ``--events``-event batches (the freshness benchmark's events) into a
publisher that does all of the Kafka publisher's work except the network (partitioning and serialising the
messages); old = ``LAKEHOUSE_INGEST_FAST_CONTRACT=false``, new = the default.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import platform
import pstats
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.dashboard_latency import widgets

ADMIN_KEY = "bench-overhead-admin-key"
RESULTS = Path(__file__).parent / "results"


def load_average() -> float:
    return round(os.getloadavg()[0], 1)


class AsgiCaller:
    """Hands requests to an ASGI app in this process and returns (status, headers, body)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def call(self, method: str, path: str, query: bytes = b"", body: bytes = b"",
                   headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
                 "root_path": "", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 40000),
                 "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {ADMIN_KEY}".encode()),
                             *(headers or [])]}
        if body:
            scope["headers"].append((b"content-length", str(len(body)).encode()))
        sent = False
        out: dict[str, Any] = {"body": b""}

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                out["status"], out["headers"] = message["status"], dict(message.get("headers", []))
            elif message["type"] == "http.response.body":
                out["body"] += message.get("body", b"")

        await self.app(scope, receive, send)
        return out["status"], out["headers"], out["body"]


def per_request(loop: asyncio.AbstractEventLoop, run: Any, n: int) -> tuple[float, int]:
    """(CPU µs per request without the profiler, function calls per request with it) for ``run(n)``."""
    t0 = time.process_time()
    loop.run_until_complete(run(n))
    cpu_us = (time.process_time() - t0) / n * 1e6
    profiler = cProfile.Profile()
    profiler.enable()
    loop.run_until_complete(run(n))
    profiler.disable()
    calls = pstats.Stats(profiler).total_calls  # type: ignore[attr-defined]
    return cpu_us, round(calls / n)


def side_by_side(loop: asyncio.AbstractEventLoop, runs: dict[str, Any], n: int, rounds: int) -> dict[str, Any]:
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    calls: dict[str, int] = {}
    for _ in range(rounds):
        for name, run in runs.items():  # alternating, so both see the same machine
            us, count = per_request(loop, run, n)
            cpu[name].append(us)
            calls[name] = count
    out: dict[str, Any] = {name: {"cpu_us_per_request_median": round(statistics.median(v), 1),
                                  "cpu_us_per_request_rounds": [round(x, 1) for x in v],
                                  "function_calls_per_request": calls[name]} for name, v in cpu.items()}
    old, new = list(runs)
    out["ratio_new_over_old"] = {
        "cpu_us": round(out[new]["cpu_us_per_request_median"] / out[old]["cpu_us_per_request_median"], 3),
        "function_calls": round(calls[new] / calls[old], 3)}
    return out


def free_port() -> int:
    """A port nothing listens on now (the bench stacks' ports stay free for them)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_redis(home: Path, port: int) -> subprocess.Popen:
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server not found: `sudo apt-get install -y redis-server`")
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(home)], stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"redis-server did not start on port {port}")


class SerializingPublisher:
    """The Kafka publisher's work without the network: partition by key and serialise each message."""

    def __init__(self, partitions: int = 3) -> None:
        self.partitions = partitions
        self.messages = 0
        self.bytes = 0

    def publish(self, events: Any, rejected: Any, *, wait: bool = False) -> None:
        import orjson

        from ingest.publisher import EVENTS_PER_MESSAGE, partition_for

        by_partition: dict[int, list[Any]] = {}
        for event in events:
            key = f"{event['tenant']}:{event['user_id']}".encode()
            by_partition.setdefault(partition_for(key, self.partitions), []).append(event)
        for group in by_partition.values():
            for start in range(0, len(group), EVENTS_PER_MESSAGE):
                self.bytes += len(orjson.dumps(group[start:start + EVENTS_PER_MESSAGE]))
                self.messages += 1
        for record in rejected:
            self.bytes += len(orjson.dumps(record))
            self.messages += 1

    def close(self) -> None:
        pass


def kafka_batches(templates: Any, events: int, rounds: int) -> dict[str, Any]:
    """The Kafka client's own CPU for the messages of one request: kafka-python building a record batch as its
    producer does (lz4, the CRC32C of the batch) with its pure-Python CRC32C (what it falls back to without
    the ``crc32c`` package) and with the ``crc32c`` extension (a dependency now)."""
    import orjson
    from kafka.record import util
    from kafka.record._crc32c import crc as crc32c_python
    from kafka.record.default_records import DefaultRecordBatchBuilder

    from ingest.publisher import EVENTS_PER_MESSAGE

    if util._crc32c is crc32c_python:
        return {"skipped": "the crc32c package is not installed"}
    batch = orjson.loads(templates.body(events))
    messages = [orjson.dumps(batch[i:i + EVENTS_PER_MESSAGE]) for i in range(0, len(batch), EVENTS_PER_MESSAGE)]
    lz4 = 3  # kafka-python's code for compression_type="lz4"

    def build() -> int:
        builder = DefaultRecordBatchBuilder(magic=2, compression_type=lz4, is_transactional=False, producer_id=-1,
                                            producer_epoch=-1, base_sequence=-1, batch_size=256 * 1024)
        for offset, value in enumerate(messages):
            builder.append(offset, timestamp=None, key=None, value=value, headers=[])
        return len(builder.build())

    impls = {"old": crc32c_python, "new": util._crc32c}
    cpu: dict[str, list[float]] = {name: [] for name in impls}
    original = util.calc_crc32c.__defaults__
    try:
        for _ in range(rounds):
            for name, impl in impls.items():
                util.calc_crc32c.__defaults__ = (impl,)
                t0 = time.process_time()
                for _ in range(5):
                    size = build()
                cpu[name].append((time.process_time() - t0) / 5 / events * 1e6)
    finally:
        util.calc_crc32c.__defaults__ = original
    out: dict[str, Any] = {name: {"cpu_us_per_event_median": round(statistics.median(v), 3)} for name, v in cpu.items()}
    out["messages"], out["raw_bytes"], out["batch_bytes_lz4"] = len(messages), sum(map(len, messages)), size
    out["ratio_new_over_old"] = round(out["new"]["cpu_us_per_event_median"] / out["old"]["cpu_us_per_event_median"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="cached requests per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=1000, help="events per ingestion batch")
    parser.add_argument("--batches", type=int, default=30, help="batches per ingestion measurement")
    parser.add_argument("--out", default=str(RESULTS / "api_overhead.json"))
    args = parser.parse_args()

    import logging

    from common.hot_schema import migrate
    from common.hot_store import ClickHouseHotStore
    from common.settings import Settings
    from serving.app import build_serving, create_app
    from serving.observability import JsonFormatter

    sink = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - the process's lifetime
    sink.setFormatter(JsonFormatter())  # the access log line is formatted as in production, then dropped
    logging.getLogger().handlers[:] = [sink]
    logging.getLogger().setLevel(logging.INFO)
    home = Path(tempfile.mkdtemp(prefix="bench-api-overhead-"))
    redis_port = free_port()
    redis_proc = start_redis(home, redis_port)
    store = None
    try:
        settings = Settings(home=home, lake_uri=str(home / "lake"), clickhouse_dsn="", hot_store_mode="direct",
                            redis_url=f"redis://127.0.0.1:{redis_port}/0", admin_key=ADMIN_KEY,
                            kafka_bootstrap="127.0.0.1:1", alert_interval_seconds=0, lake_session_seconds=0)
        store = ClickHouseHotStore(settings.effective_clickhouse_dsn)
        migrate(store)
        loop = asyncio.new_event_loop()
        apps = {}
        for name, fast in (("old", False), ("new", True)):
            changed = settings.model_copy(update={"fast_cached_reads": fast})
            apps[name] = AsgiCaller(create_app(build_serving(changed, store, publisher=SerializingPublisher())))

        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        from urllib.parse import urlencode

        urls = [(path, urlencode(params).encode()) for path, params in
                widgets("bench", end - timedelta(days=7), end).values()]
        answers: dict[str, list[bytes]] = {}
        for name, caller in apps.items():  # fill (the first app computes, the second finds the entries) and check
            got = []
            for path, query in urls * 3:
                status, headers, body = loop.run_until_complete(caller.call("GET", path, query))
                if status != 200:
                    raise SystemExit(f"{name} {path}: {status} {body[:200]!r}")
                got.append(body)
            answers[name] = got
        if answers["old"] != answers["new"]:
            raise SystemExit("the fast path answered differently from the route")

        def reads(caller: AsgiCaller, expect_fast: bool) -> Any:
            async def run(n: int) -> None:
                for i in range(n):
                    path, query = urls[i % len(urls)]
                    status, headers, _ = await caller.call("GET", path, query)
                    assert status == 200 and headers[b"x-cache"] == b"hit", (status, headers)
            return run

        load_before = load_average()
        cached = side_by_side(loop, {"old": reads(apps["old"], False), "new": reads(apps["new"], True)},
                              args.requests, args.rounds)
        cached["load_average_1m"] = [load_before, load_average()]

        if "ingest_fast_contract" not in Settings.model_fields:
            print(json.dumps(cached, indent=2))
            return
        from bench.freshness_throughput import EventTemplates

        templates = EventTemplates()
        ingest_apps = {}
        for name, fast in (("old", False), ("new", True)):
            changed = settings.model_copy(update={"ingest_fast_contract": fast})
            ingest_apps[name] = AsgiCaller(create_app(build_serving(changed, store, publisher=SerializingPublisher())))
        check = templates.body(args.events)
        bodies = {name: loop.run_until_complete(c.call("POST", "/events", b"", check))[2]
                  for name, c in ingest_apps.items()}
        if bodies["old"] != bodies["new"]:
            raise SystemExit(f"ingestion answered differently: {bodies['old'][:200]!r} {bodies['new'][:200]!r}")
        batch = [templates.body(args.events) for _ in range(args.batches)]

        def ingest(caller: AsgiCaller) -> Any:
            async def run(n: int) -> None:
                for i in range(n):
                    status, _, body = await caller.call("POST", "/events", b"", batch[i % len(batch)])
                    assert status == 200, body[:200]
            return run

        load_before = load_average()
        ingestion = side_by_side(loop, {"old": ingest(ingest_apps["old"]), "new": ingest(ingest_apps["new"])},
                                 args.batches, args.rounds)
        for name in ("old", "new"):
            ingestion[name]["cpu_us_per_event_median"] = round(
                ingestion[name]["cpu_us_per_request_median"] / args.events, 2)
            per_event = ingestion[name]["cpu_us_per_event_median"]
            ingestion[name]["events_per_cpu_second"] = round(1e6 / per_event) if per_event else None
        ingestion["load_average_1m"] = [load_before, load_average()]
        load_before = load_average()
        producer = kafka_batches(templates, args.events, args.rounds)
        producer["load_average_1m"] = [load_before, load_average()]
        result = {"benchmark": "api_overhead", "at": datetime.now(UTC).isoformat(timespec="seconds"),
                  "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                  "cached_reads": {"requests": args.requests, "rounds": args.rounds, "urls": len(urls), **cached},
                  "ingestion": {"events_per_batch": args.events, "batches": args.batches, **ingestion},
                  "kafka_record_batches": producer}
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        if store is not None:
            store.close()
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
