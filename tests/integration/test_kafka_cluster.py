"""Kafka as in production: a three-broker KRaft cluster loses one broker under load, and no acknowledged
event is lost or counted twice.

The test starts its own stack (``LAKEHOUSE_KAFKA_BROKERS=3``: replication factor 3,
``min.insync.replicas=2``) with the API/hot node and the stream job, posts events through the API in
the default durable mode (answered only after Kafka's ``acks=all``), and SIGKILLs broker 2 in the
middle. Clients retry a failed request with the same ``Idempotency-Key`` and event ids, as the API
tells them to. Afterwards the hot tier must hold every acknowledged event exactly once. It prints how
long the clients were stalled by the failure.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from common.hot_store import FlightHotStore
from common.settings import Settings
from demo.clickstream import Clickstream
from serving.tenancy.auth import bearer_headers
from stack import process
from stack.services import Stack
from tests.integration.conftest import wait_for
from tests.integration.own_services import free_pair, own_stack

pytestmark = [pytest.mark.integration, pytest.mark.faults]

LOAD_SECONDS = 24
KILL_AFTER = 8
CHUNK = 200
WORKERS = 2
RETRY_FOR = 90.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Stack]]:
    home: Path = tmp_path_factory.mktemp("kafka-cluster-home")
    brokers = [free_pair() for _ in range(3)]
    while len(set(brokers) | {b + 1 for b in brokers}) < 6:
        brokers = [free_pair() for _ in range(3)]
    env = {
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_KAFKA_BROKERS": "3",
        "LAKEHOUSE_KAFKA_BOOTSTRAP": ",".join(f"127.0.0.1:{p}" for p in brokers),
        "LAKEHOUSE_REDIS_URL": f"redis://127.0.0.1:{free_pair()}/0",
        "LAKEHOUSE_API_PORT": str(free_pair()),
        "LAKEHOUSE_HOT_NODE_URL": f"grpc://127.0.0.1:{free_pair()}",
        "LAKEHOUSE_S3_ENDPOINT": f"http://127.0.0.1:{free_pair()}",
        "LAKEHOUSE_STREAM_LANDING_TRIGGER_SECONDS": "5",
    }
    services = ["kafka-1", "kafka-2", "kafka-3", "redis", "api", "stream"]
    with own_stack(env, services) as (settings, own):
        yield settings, own


@dataclass
class Clients:
    """Posts events of one tenant through the API and retries each request until it is acknowledged."""

    settings: Settings
    tenant: str
    acknowledged: set[str] = field(default_factory=set)
    retries: int = 0
    longest_stall: float = 0.0
    gave_up: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _worker(self, seed: int, stop_at: float) -> None:
        stream = Clickstream(seed=seed, tenants=(self.tenant,), users_per_tenant=500)
        with httpx.Client(base_url=self.settings.api_url, timeout=30,
                          headers=bearer_headers(self.settings.admin_key)) as client:
            while time.monotonic() < stop_at:
                events = [e.body for e in stream.batch(CHUNK, datetime.now(UTC), disorder_s=5, duplicate_rate=0.0,
                                                       malformed_rate=0.0)]
                key = uuid.uuid4().hex
                first_try = time.monotonic()
                acknowledged = False
                while not acknowledged:
                    try:
                        response = client.post("/events", json=events, headers={"Idempotency-Key": key})
                        acknowledged = response.status_code == 200 and response.json()["accepted"] == len(events)
                        problem = f"{response.status_code} {response.text[:120]}"
                    except httpx.HTTPError as exc:
                        problem = repr(exc)
                    if acknowledged:
                        break
                    with self._lock:
                        self.retries += 1
                    if time.monotonic() - first_try > RETRY_FOR:
                        with self._lock:
                            self.gave_up.append(problem)
                        break
                    time.sleep(0.5)
                with self._lock:
                    self.longest_stall = max(self.longest_stall, time.monotonic() - first_try)
                    if acknowledged:
                        self.acknowledged.update(e["event_id"] for e in events)


def test_one_broker_of_three_killed_under_load_loses_no_acknowledged_event(cluster: tuple[Settings, Stack]) -> None:
    settings, stack = cluster
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    clients = Clients(settings, tenant)
    started = time.monotonic()
    stop_at = started + LOAD_SECONDS
    workers = [threading.Thread(target=clients._worker, args=(11 + i, stop_at), daemon=True) for i in range(WORKERS)]
    for worker in workers:
        worker.start()
    time.sleep(KILL_AFTER)
    record = process.read_pid(stack.service("kafka-2").pid_file)
    assert record is not None and record.alive()
    os.killpg(record.pid, signal.SIGKILL)
    killed_at = time.monotonic() - started
    for worker in workers:
        worker.join(LOAD_SECONDS + RETRY_FOR + 30)
    print(f"broker 2 killed at +{killed_at:.1f}s; {len(clients.acknowledged):,} events acknowledged, "
          f"{clients.retries} retried requests, longest client stall {clients.longest_stall:.1f}s")
    assert not clients.gave_up, clients.gave_up[:3]
    assert len(clients.acknowledged) > 1_000

    hot = FlightHotStore.for_settings(settings)
    try:
        def counted() -> tuple[int, int]:
            row = hot.query_arrow("SELECT count() AS n, uniqExact(event_id) AS d FROM events_raw "
                                  "WHERE tenant = {t:String}", {"t": tenant}).to_pylist()[0]
            return int(row["n"]), int(row["d"])

        wait_for(lambda: counted()[1] >= len(clients.acknowledged), 180, "every acknowledged event in the hot tier",
                 interval=2)
        ids = set(hot.query_arrow("SELECT event_id FROM events_raw WHERE tenant = {t:String}", {"t": tenant})
                  .column("event_id").to_pylist())
        assert clients.acknowledged <= ids
        n, distinct = counted()
        assert n == distinct, f"{n - distinct} events counted twice"
        print(f"hot tier: {n:,} events of {tenant}, each once, {time.monotonic() - started:.0f}s after the load began")
    finally:
        hot.close()
