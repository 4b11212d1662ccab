"""Stopping the stream leaves nothing of it behind: not on `down` in the middle of a large
micro-batch, and not when its Python driver is SIGKILLed (its JVM must not outlive it).

The stream is restarted for these tests on a topic, checkpoint and lake of their own, with room for
a micro-batch of a few hundred thousand events, so that a stop lands while Spark is busy with it;
the session's own stream is restored afterwards, on its own checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer

from common import procfs
from common.hot_store import HotStore
from common.settings import Settings
from stack import ensure_topics
from stack.process import read_pid
from stack.services import Stack
from stack.strays import STACK_SERVICE
from tests.integration.conftest import wait_for
from tests.integration.own_services import environment, stream_of_its_own

pytestmark = pytest.mark.integration

EVENTS_PER_RECORD = 1000
RECORDS = 300  # 300,000 events, all in the first micro-batch (the trigger admits 1,000 records)


def produce_backlog(settings: Settings, topic: str, tenant: str) -> int:
    """Kafka records as any producer may write them: JSON arrays of events."""
    now = datetime.now(UTC).isoformat()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=50,
                             compression_type="lz4", max_request_size=4 * 2**20)
    try:
        for record in range(RECORDS):
            events = [{"tenant": tenant, "event": "page_view", "timestamp": now,
                       "event_id": f"{tenant}-{record}-{i}", "user_id": f"u{i % 997}", "page": "/p",
                       "country": "DE", "device": "mobile", "properties": "{}", "received_at": now}
                      for i in range(EVENTS_PER_RECORD)]
            producer.send(topic, json.dumps(events).encode())
        producer.flush()
    finally:
        producer.close()
    return RECORDS * EVENTS_PER_RECORD


def stream_processes(settings: Settings, pgid: int) -> list[procfs.ProcessInfo]:
    """Live processes of the stream's group, or tagged as the stream of this home, or its JVM by name."""
    home = str(settings.home.resolve())
    found = []
    for p in procfs.processes():
        env = p.environ or {}
        tagged = env.get("LAKEHOUSE_STACK_HOME") == home and env.get(STACK_SERVICE) == "stream"
        if not p.gone and (p.pgid == pgid or tagged):
            found.append(p)
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_busy(settings: Settings, pgid: int, timeout: float) -> procfs.ProcessInfo:
    """The stream's JVM once it burns CPU steadily (well over half a core for 2 s): mid-batch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jvms = [p for p in stream_processes(settings, pgid) if p.comm == "java"]
        if jvms:
            before = cpu_seconds(jvms[0].pid)
            time.sleep(2)
            if cpu_seconds(jvms[0].pid) - before > 1.2:
                return jvms[0]
        else:
            time.sleep(0.5)
    raise AssertionError("the stream's JVM never got busy with the backlog")


def hot_count(hot: HotStore, tenant: str) -> int:
    sql = "SELECT count() AS n FROM events_raw WHERE tenant = {t:String}"
    return hot.query_arrow(sql, {"t": tenant}).to_pylist()[0]["n"]


@pytest.fixture(scope="module")
def busy_stream(stack: Stack, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stack's stream, restarted on a topic of its own with large micro-batches; yields the topic."""
    overrides = {**stream_of_its_own("stop", tmp_path_factory.mktemp("stopping")),
                 "LAKEHOUSE_STREAM_MAX_OFFSETS_PER_TRIGGER": str(RECORDS + 100)}
    topic = overrides["LAKEHOUSE_KAFKA_TOPIC"]
    ensure_topics(Settings(kafka_topic=topic, kafka_dlq_topic=f"{topic}.dlq"))
    stack.down(["stream"])
    try:
        with environment(overrides):  # the stream service is spawned with this process's environment
            yield topic
    finally:
        stack.down(["stream"])
        stack.up(["stream"])  # the session's stream again, on its own checkpoint


def test_down_in_the_middle_of_a_large_micro_batch_leaves_no_process_of_the_stream(
    stack: Stack, settings: Settings, hot: HotStore, busy_stream: str
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    sent = produce_backlog(settings, busy_stream, tenant)
    stack.up(["stream"])
    record = read_pid(settings.home / "run" / "stream.pid")
    assert record is not None
    jvm = wait_until_busy(settings, record.pid, timeout=120)
    assert jvm.pgid == record.pid, "the JVM runs in the stream's process group"
    assert hot_count(hot, tenant) < sent, "the stop must come before the big batch is committed"

    lines: list[str] = []
    stack.progress, saved = lines.append, stack.progress
    started = time.monotonic()
    try:
        [status] = stack.down(["stream"])
    finally:
        stack.progress = saved
    took = time.monotonic() - started
    print("\n".join(lines), f"(down took {took:.1f}s)")

    timeout = stack.service("stream").stop_timeout
    assert took < timeout + 12, f"down took {took:.1f}s"
    assert status.state == "stopped"
    assert stream_processes(settings, record.pid) == []
    after = procfs.read_process(jvm.pid)
    assert after is None or after.gone or after.start_ticks != jvm.start_ticks, "the JVM is gone (or a zombie)"
    assert stack.strays() == []
    assert any(f"pid {jvm.pid} java" in line for line in lines), f"the report names the JVM: {lines}"


def test_sigkill_of_the_streams_python_leaves_no_jvm_behind(
    stack: Stack, settings: Settings, busy_stream: str
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    produce_backlog(settings, busy_stream, tenant)
    stack.up(["stream"])
    record = read_pid(settings.home / "run" / "stream.pid")
    assert record is not None
    jvm = wait_until_busy(settings, record.pid, timeout=120)

    os.kill(record.pid, signal.SIGKILL)  # the driver alone, as the OOM killer or a crash would
    killed_at = time.monotonic()
    wait_for(lambda: stream_processes(settings, record.pid) == [], 20, "every process of the stream to be gone")
    gone_after = time.monotonic() - killed_at
    print(f"JVM pid {jvm.pid} and the rest of the stream gone {gone_after:.1f}s after the driver's SIGKILL")
    assert stack.strays() == []
    assert [s.state for s in stack.status(["stream"])] == ["stopped"]
