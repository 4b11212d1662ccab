"""API workers in front of a hot node of their own: a rolling restart of the workers drops no request, and
cached dashboards and ingestion (POST /events) keep answering while the hot node is down (``LAKEHOUSE_API_WORKERS``).

A hot node and two workers of the test's own (home, ports, topic; the session's Kafka and Redis), so stopping
its hot node or restarting its workers cannot disturb the session's stack.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import orjson
import pytest

from common import procfs
from common.hot_store import FlightHotStore
from common.rollups import minute_rollups
from common.settings import Settings
from stack.kafka import ensure_topics
from stack.process import read_pid
from stack.services import Stack
from tests.integration.conftest import wait_for
from tests.integration.direct_hot import events_table
from tests.integration.own_services import free_pair, own_stack
from tests.integration.test_durability import kafka_event_ids

pytestmark = pytest.mark.integration

SERVICES = ["hot-node", "api"]


@pytest.fixture(scope="module")
def workers_stack(stack: Stack, settings: Settings, tmp_path_factory: pytest.TempPathFactory,
                  ) -> Iterator[tuple[Settings, Stack]]:
    """A hot node and two API workers of the test's own (home, ports, topic) on the session's Kafka and Redis."""
    home: Path = tmp_path_factory.mktemp("api-workers")
    topic = f"workers-{uuid.uuid4().hex[:8]}"
    ensure_topics(Settings(kafka_topic=topic, kafka_dlq_topic=f"{topic}.dlq"))
    env = {
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_API_WORKERS": "2",
        "LAKEHOUSE_API_PORT": str(free_pair()),
        "LAKEHOUSE_HOT_NODE_URL": f"grpc://127.0.0.1:{free_pair()}",
        "LAKEHOUSE_KAFKA_TOPIC": topic,
        "LAKEHOUSE_KAFKA_DLQ_TOPIC": f"{topic}.dlq",
        "LAKEHOUSE_ALERT_INTERVAL_SECONDS": "0",
        "LAKEHOUSE_AUTH_CACHE_SECONDS": "1",  # the key table is reloaded (and fails) while the hot node is down
        "LAKEHOUSE_CACHE_TTL_SECONDS": "600",  # the cached question outlives the whole test
        "LAKEHOUSE_CACHE_OPEN_TTL_SECONDS": "60",  # only the hot node's write mark can refresh an open answer sooner
    }
    with own_stack(env, SERVICES) as pair:
        yield pair


def call(settings: Settings, key: str, method: str, path: str, body: object = None,
         ) -> tuple[int, dict[str, str], bytes]:
    """One request on a connection of its own, as a client pool opening connections would send it."""
    conn = http.client.HTTPConnection(settings.api_host, settings.api_port, timeout=15)
    try:
        conn.request(method, path, body=None if body is None else orjson.dumps(body),
                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def get(settings: Settings, key: str, path: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    return call(settings, key, "GET", f"{path}?{urlencode(params)}")


@dataclass
class Traffic:
    """Dashboard reads of one cached question and event batches, in two threads, until stopped; every outcome
    kept (an exception is an outcome too: a dropped request)."""

    settings: Settings
    key: str  # a tenant key: its check uses the worker's copy of the key table
    tenant: str
    question: dict[str, str]
    expected_total: int
    reads: Counter = field(default_factory=Counter)
    posts: Counter = field(default_factory=Counter)
    posted_ids: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                status, headers, body = get(self.settings, self.key, "/v1/breakdown", self.question)
            except OSError as exc:
                self.reads[type(exc).__name__] += 1
                continue
            self.reads[f"{status}:{headers.get('x-cache')}"] += 1
            if status == 200 and sum(r["value"] for r in orjson.loads(body)["rows"]) != self.expected_total:
                self.wrong.append(body.decode()[:200])

    def _post(self) -> None:
        while not self._stop.is_set():
            batch = [{"tenant": self.tenant, "event": "click", "timestamp": datetime.now(UTC).isoformat(),
                      "user_id": f"u{i}", "event_id": uuid.uuid4().hex} for i in range(20)]
            try:
                status = call(self.settings, self.key, "POST", "/events", batch)[0]
            except OSError as exc:
                self.posts[type(exc).__name__] += 1
                continue
            self.posts[status] += 1
            if status == 200:
                self.posted_ids += [e["event_id"] for e in batch]
            time.sleep(0.02)

    def __enter__(self) -> Traffic:
        self._threads = [threading.Thread(target=self._read), threading.Thread(target=self._post)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def worker_pids(api_pid: int) -> set[int]:
    children = Path(f"/proc/{api_pid}/task/{api_pid}/children").read_text().split()
    return {int(pid) for pid in children if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")}


def test_workers_restart_one_at_a_time_and_outlive_the_hot_node(workers_stack: tuple[Settings, Stack]) -> None:
    settings, stack = workers_stack
    tenant = f"w-{uuid.uuid4().hex[:8]}"
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=3)
    counts = {"DE": 30, "FR": 12, "US": 7}  # the truth: what is written, by country
    hot = FlightHotStore.for_settings(settings)
    for k, (country, n) in enumerate(counts.items()):
        events = events_table(tenant, start + timedelta(minutes=10 + 40 * k), n, country=country)
        hot.insert_arrow("events_raw", events, token=f"{tenant}:{k}:raw")
        hot.insert_arrow("rollups_1m_ingest", minute_rollups(events), token=f"{tenant}:{k}:rollups")
    admin = settings.admin_key
    assert call(settings, admin, "POST", "/v1/admin/tenants", {"id": tenant})[0] == 201
    status, _, body = call(settings, admin, "POST", f"/v1/admin/tenants/{tenant}/keys",
                           {"rate_per_second": 100_000, "burst": 100_000})
    assert status == 201, body
    key = orjson.loads(body)["key"]
    question = {"metric": "events", "by": "country", "from": start.isoformat(),
                "to": end.isoformat()}
    wait_for(lambda: all(get(settings, key, "/v1/breakdown", question)[0] == 200 for _ in range(4)), 10,
             "the new key known to both workers (each reloads its key table within a second)")
    status, headers, body = get(settings, key, "/v1/breakdown", question)
    assert status == 200 and headers["x-cache"] == "hit", body
    assert {r["country"]: r["value"] for r in orjson.loads(body)["rows"]} == counts

    api_pid = read_pid(settings.home / "run" / "api.pid").pid
    before = worker_pids(api_pid)
    assert len(before) == 2
    with Traffic(settings, key, tenant, question, sum(counts.values())) as during_restart:
        time.sleep(0.5)
        os.kill(api_pid, signal.SIGHUP)  # rolling restart: one worker at a time
        wait_for(lambda: len(worker_pids(api_pid)) == 2 and not worker_pids(api_pid) & before, 60,
                 "both API workers replaced", interval=0.2)
    print(f"during the rolling restart: reads {dict(during_restart.reads)}, posts {dict(during_restart.posts)}")
    # the restarted workers and the hot node, where the queries run, yield the CPU to the stream as the API does
    hot_node = read_pid(settings.home / "run" / "hot-node.pid").pid
    expected = max(settings.serving_cpu_nice, os.getpriority(os.PRIO_PROCESS, 0))  # a niced runner's stays
    assert {procfs.nice_value(pid) for pid in {hot_node, *worker_pids(api_pid)}} == {expected}
    assert set(during_restart.reads) == {"200:hit"} and set(during_restart.posts) == {200}
    assert during_restart.reads["200:hit"] > 20 and during_restart.posts[200] > 5
    assert not during_restart.wrong

    stack.down(["hot-node"])
    try:
        uncached = {**question, "to": (end - timedelta(minutes=1)).isoformat()}
        status, _, body = get(settings, key, "/v1/breakdown", uncached)
        assert status == 503 and b"hot node" in body, body  # uncached questions need it (and say so)
        with Traffic(settings, key, tenant, question, sum(counts.values())) as while_down:
            time.sleep(2.5)  # past the key table's reload time: its failed reloads do not touch requests
    finally:
        stack.up(["hot-node"])
    print(f"while the hot node was down: reads {dict(while_down.reads)}, posts {dict(while_down.posts)}")
    assert set(while_down.reads) == {"200:hit"} and set(while_down.posts) == {200}
    assert while_down.reads["200:hit"] > 20 and while_down.posts[200] > 5
    assert not while_down.wrong

    # back: an uncached question computes again, and equals the truth
    uncached = {**question, "to": (end - timedelta(minutes=2)).isoformat()}
    status, headers, body = get(settings, key, "/v1/breakdown", uncached)
    assert status == 200 and headers["x-cache"] == "miss", body
    assert {r["country"]: r["value"] for r in orjson.loads(body)["rows"]} == counts
    # every acknowledged event is in Kafka, once
    acknowledged = during_restart.posted_ids + while_down.posted_ids
    assert Counter(kafka_event_ids(settings, tenant)) == Counter(acknowledged)


def test_an_open_answer_follows_the_hot_nodes_writes_in_every_worker(workers_stack: tuple[Settings, Stack]) -> None:
    """Each worker polls the hot node's write mark over Flight (serving/hot_writes.py); with the open TTL at a minute
    here, a write that shows in every worker's answer within seconds shows through the mark."""
    settings, _ = workers_stack
    tenant = f"wm-{uuid.uuid4().hex[:8]}"
    question = {"metric": "events", "tenant": tenant, "range": "15m"}

    def totals() -> list[int]:  # four connections of their own: both workers answer some
        found = []
        for _ in range(4):
            status, _, body = get(settings, settings.admin_key, "/v1/timeseries", question)
            assert status == 200, body
            found.append(sum(p[1] for series in orjson.loads(body)["series"] for p in series["points"]))
        return found

    assert totals() == [0, 0, 0, 0]  # now cached for a minute, under the hot node's current mark
    events = events_table(tenant, datetime.now(UTC) - timedelta(minutes=2), 5)
    hot = FlightHotStore.for_settings(settings)
    hot.insert_arrow("events_raw", events, token=f"{tenant}:raw")  # as the stream writes a micro-batch
    hot.insert_arrow("rollups_1m_ingest", minute_rollups(events), token=f"{tenant}:rollups")
    written = time.monotonic()
    wait_for(lambda: totals() == [5, 5, 5, 5], 15, "the write in every worker's open answer")
    print(f"an open answer showed the write in every worker after {time.monotonic() - written:.2f} s")
