"""Fault drill: under sustained load with client retries, every fault of the local stack in turn, and
afterwards every acknowledged event is in the hot tier, the landing and the archive exactly once.

The test starts its own stack (lake on MinIO, so that restarting MinIO is felt by the landing sink)
and keeps clients posting through the API in the default durable mode (answered once Kafka
acknowledged with ``acks=all``). A client retries a failed request with the same events (its own
``event_id``s) and the same ``Idempotency-Key``, as the API's 503 tells it to. In turn:

1. the stream job is SIGKILLed (its JVM too) and started again: it replays from its checkpoint;
2. the Kafka broker is stopped and started;
3. MinIO is stopped and started (the landing sink writes to it);
4. the API, which is also the hot node, is SIGKILLed and started again;
5. Redis is stopped and started.

Between faults the test waits until dashboards are fresh again. A probe reads the newest event time
of the tenant from the hot tier twice a second; the test prints, per fault, how long dashboards were
stale (the largest lag seen) and how long after the fault they were fresh again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from batch.archive import archive_hour, archived_hour
from common.hot_store import FlightHotStore
from common.lake import fs_path, lake_filesystem, landing_files_by_hour
from common.settings import Settings
from serving.tenancy.auth import bearer_headers
from stack import process
from stack.services import Stack
from tests.integration.conftest import wait_for
from tests.integration.own_services import free_pair, own_stack

pytestmark = [pytest.mark.integration, pytest.mark.faults]

WORKERS = 2
CHUNK = 50  # events per request
RATE = 250  # events/s offered by all clients together
RETRY_FOR = 150.0  # a client gives a batch up only after this long
FRESH_SECONDS = 10.0  # dashboards count as fresh when the newest event they show is at most this old
RECOVERY_TIMEOUT = 150.0


@pytest.fixture(scope="module")
def drill_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Stack]]:
    home: Path = tmp_path_factory.mktemp("fault-drill-home")
    env = {
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_LAKE_URI": "s3://drill/lake",
        "LAKEHOUSE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_pair()}",
        "LAKEHOUSE_S3_ENDPOINT": f"http://127.0.0.1:{free_pair()}",
        "LAKEHOUSE_REDIS_URL": f"redis://127.0.0.1:{free_pair()}/0",
        "LAKEHOUSE_API_PORT": str(free_pair()),
        "LAKEHOUSE_HOT_NODE_URL": f"grpc://127.0.0.1:{free_pair()}",
        "LAKEHOUSE_STREAM_LANDING_TRIGGER_SECONDS": "5",
        "LAKEHOUSE_LAKE_SESSION_SECONDS": "1",
    }
    with own_stack(env) as (settings, own):
        yield settings, own


@dataclass
class Clients:
    """Post one tenant's events at ``RATE``; each batch is retried, same ids and key, until acknowledged."""

    settings: Settings
    tenant: str
    sent: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    retries: int = 0
    gave_up: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _batch(self) -> list[dict]:
        now = datetime.now(UTC).isoformat()
        return [{"tenant": self.tenant, "event": "page_view", "timestamp": now, "user_id": f"u{i % 40}",
                 "event_id": uuid.uuid4().hex} for i in range(CHUNK)]

    def _worker(self) -> None:
        interval = CHUNK * WORKERS / RATE
        with httpx.Client(base_url=self.settings.api_url, timeout=30,
                          headers=bearer_headers(self.settings.admin_key)) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                events, key = self._batch(), uuid.uuid4().hex
                with self._lock:
                    self.sent.update(e["event_id"] for e in events)
                while True:
                    try:
                        response = client.post("/events", json=events, headers={"Idempotency-Key": key})
                        if response.status_code == 200 and response.json()["accepted"] == len(events):
                            with self._lock:
                                self.acknowledged.update(e["event_id"] for e in events)
                            break
                        problem = f"{response.status_code} {response.text[:120]}"
                    except httpx.HTTPError as exc:
                        problem = repr(exc)
                    with self._lock:
                        self.retries += 1
                    if time.monotonic() - started > RETRY_FOR:
                        with self._lock:
                            self.gave_up.append(problem)
                        break
                    time.sleep(0.5)
                self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def __enter__(self) -> Clients:
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(WORKERS)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(RETRY_FOR + 40)


@dataclass
class Probe:
    """Twice a second: how old is the newest event of the tenant that the hot tier shows (None: no answer)."""

    settings: Settings
    tenant: str
    samples: list[tuple[float, float | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _lag(self, store: FlightHotStore) -> float | None:
        row = store.query_arrow("SELECT max(timestamp) AS newest, count() AS n FROM events_raw "
                                "WHERE tenant = {t:String}", {"t": self.tenant}).to_pylist()[0]
        if not row["n"]:
            return None
        newest = row["newest"] if row["newest"].tzinfo else row["newest"].replace(tzinfo=UTC)
        return max(0.0, (datetime.now(UTC) - newest).total_seconds())

    def _run(self) -> None:
        store: FlightHotStore | None = None
        while not self._stop.is_set():
            lag: float | None = None
            try:
                store = store or FlightHotStore.for_settings(self.settings, timeout_s=10)
                lag = self._lag(store)
            except Exception:  # the hot node is down: dashboards get no answer at all
                if store is not None:
                    store.close()
                store = None
            self.samples.append((time.monotonic(), lag))
            self._stop.wait(0.5)
        if store is not None:
            store.close()

    def fresh(self) -> bool:
        return bool(self.samples) and self.samples[-1][1] is not None and self.samples[-1][1] <= FRESH_SECONDS

    def usual(self, before: float, seconds: float = 3.0) -> float:
        """The median lag in the calm ``seconds`` before ``before``: what fresh looks like under this load."""
        lags = sorted(lag for at, lag in self.samples if before - seconds <= at < before and lag is not None)
        return lags[len(lags) // 2] if lags else float("nan")

    def staleness(self, start: float, end: float) -> float:
        """The largest lag seen in ``[start, end]``; a probe without an answer counts as stale since ``start``."""
        worst = 0.0
        for at, lag in self.samples:
            if start <= at <= end:
                worst = max(worst, lag if lag is not None else at - start)
        return worst

    def __enter__(self) -> Probe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def sigkill(stack: Stack, name: str) -> None:
    record = process.read_pid(stack.service(name).pid_file)
    assert record is not None and record.alive(), f"{name} is not running"
    os.killpg(record.pid, signal.SIGKILL)
    wait_for(lambda: not record.alive(), 15, f"{name} to die")


def restart(stack: Stack, name: str, pause: float = 3.0) -> None:
    stack.down([name])
    time.sleep(pause)  # down long enough for clients and the stream to notice
    stack.up([name])


def recover(stack: Stack, probe: Probe, fault: str) -> list[str]:
    """Starts whatever the fault took down on its way (an operator's `lakehouse stack up`: e.g. a stream
    whose Kafka source gave up while the broker was away) until dashboards are fresh; returns those names."""
    restarted: list[str] = []
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while not probe.fresh():
        assert time.monotonic() < deadline, f"dashboards not fresh {RECOVERY_TIMEOUT:.0f}s after: {fault}"
        down = [s.name for s in stack.status() if s.state != "running"]
        if down:
            restarted += down
            stack.up(down)
        time.sleep(1)
    return restarted


def hot_ids(settings: Settings, tenant: str) -> list[str]:
    store = FlightHotStore.for_settings(settings)
    try:
        return store.query_arrow("SELECT event_id FROM events_raw WHERE tenant = {t:String}",
                                 {"t": tenant}).column("event_id").to_pylist()
    finally:
        store.close()


def tenant_ids(settings: Settings, files: list[str], tenant: str) -> list[str]:
    """Every event id of ``tenant`` in the given lake files (duplicates kept)."""
    filesystem = lake_filesystem(settings)
    ids: list[str] = []
    for path in files:
        table = pq.read_table(fs_path(path), columns=["tenant", "event_id"], filesystem=filesystem)
        ids += [i for t, i in zip(table.column("tenant").to_pylist(), table.column("event_id").to_pylist(),
                                  strict=True) if t == tenant]
    return ids


def test_every_fault_under_load_loses_no_acknowledged_event_and_counts_none_twice(
    drill_stack: tuple[Settings, Stack],
) -> None:
    settings, stack = drill_stack
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    faults: list[tuple[str, Callable[[], None]]] = [
        ("stream job SIGKILLed", lambda: (sigkill(stack, "stream"), stack.up(["stream"]))),
        ("Kafka broker restarted", lambda: restart(stack, "kafka")),
        ("MinIO restarted", lambda: restart(stack, "minio")),
        ("API/hot node SIGKILLed and restarted", lambda: (sigkill(stack, "api"), stack.up(["api"]))),
        ("Redis stopped and started", lambda: restart(stack, "redis")),
    ]
    report: list[str] = []
    drill_started = time.monotonic()
    with Clients(settings, tenant) as clients, Probe(settings, tenant) as probe:
        wait_for(probe.fresh, 90, "the first events on dashboards")
        for name, fault in faults:
            time.sleep(3)  # calm load before each fault: the usual lag
            started = time.monotonic()
            fault()
            restarted = recover(stack, probe, name)
            fresh_after = time.monotonic() - started
            time.sleep(2)  # the lag keeps falling for a moment: its peak is seen whole
            report.append(f"{name}: dashboards stale up to {probe.staleness(started, time.monotonic()):.1f}s "
                          f"(usual lag {probe.usual(started):.1f}s), fresh (≤ {FRESH_SECONDS:.0f}s) again "
                          f"{fresh_after:.1f}s after the fault began"
                          + (f"; also restarted: {', '.join(restarted)}" if restarted else ""))
    for line in report:
        print(line)
    print(f"{len(clients.acknowledged):,} events acknowledged of {len(clients.sent):,} sent, "
          f"{clients.retries} retried requests, drill {time.monotonic() - drill_started:.0f}s")
    assert not clients.gave_up, clients.gave_up[:3]
    assert clients.acknowledged == clients.sent
    assert len(clients.acknowledged) > 2_000

    # The hot tier: every acknowledged event exactly once (retried batches included), nothing else.
    wait_for(lambda: len(set(hot_ids(settings, tenant))) >= len(clients.acknowledged), 180,
             "every acknowledged event in the hot tier", interval=2)
    ids = hot_ids(settings, tenant)
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} events counted twice in the hot tier"
    assert set(ids) == clients.acknowledged

    # The landing holds each of them (duplicates of retried batches too: it keeps what Kafka holds), and the
    # archive of their hours holds each exactly once.
    def landed() -> set[str]:
        files = [f for fs in landing_files_by_hour(settings).values() for f in fs]
        return set(tenant_ids(settings, files, tenant))

    wait_for(lambda: landed() >= clients.acknowledged, 90, "every acknowledged event in the landing", interval=2)
    archived: list[str] = []
    for hour in sorted(landing_files_by_hour(settings)):  # this stack's lake holds only the drill's hours
        archive_hour(settings, hour, progress=lambda _: None)
        archived += tenant_ids(settings, archived_hour(settings, hour).files, tenant)
    assert len(archived) == len(set(archived)), f"{len(archived) - len(set(archived))} events archived twice"
    assert set(archived) == clients.acknowledged
