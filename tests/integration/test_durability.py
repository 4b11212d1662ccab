"""Acknowledged means durable: a killed API loses no acknowledged event, a retried batch counts once."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from common.hot_store import HotStore
from common.settings import Settings
from serving.tenancy.auth import bearer_headers
from stack.process import read_pid
from stack.services import Stack
from tests.integration.conftest import wait_for
from tests.integration.hot_truth import stream_caught_up

pytestmark = pytest.mark.integration


def kafka_event_ids(settings: Settings, tenant: str) -> list[str]:
    """Every event id of ``tenant`` in the events topic, duplicates included (read from the start up to the end
    offsets of the moment: everything written before the call, without waiting out an idle timeout)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=30_000)
    try:
        parts = [TopicPartition(settings.kafka_topic, p) for p in consumer.partitions_for_topic(settings.kafka_topic)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = {part: end for part, end in consumer.end_offsets(parts).items() if end > consumer.position(part)}
        ids = []
        for message in consumer if ends else ():
            part = TopicPartition(message.topic, message.partition)
            if message.offset < ends.get(part, 0):
                try:
                    value = orjson.loads(message.value)
                except orjson.JSONDecodeError:  # another test's malformed record (the contract tests write some)
                    value = None
                for event in value if isinstance(value, list) else [value]:
                    if isinstance(event, dict) and event.get("tenant") == tenant:
                        ids.append(event["event_id"])
            if message.offset + 1 >= ends.get(part, 0):
                ends.pop(part, None)
            if not ends:
                break
        assert not ends, f"the topic's records up to {ends} were not read within 30 s"
        return ids
    finally:
        consumer.close()


def hot_ids(hot: HotStore, tenant: str) -> list[str]:
    rows = hot.query_arrow("SELECT event_id FROM events_raw WHERE tenant = {t:String}", {"t": tenant}).to_pylist()
    return [r["event_id"] for r in rows]


def batch(tenant: str, n: int, with_ids: bool = True) -> list[dict]:
    now = datetime.now(UTC).isoformat()
    return [{"tenant": tenant, "event": "purchase", "timestamp": now, "user_id": f"u{i}", "revenue": 1.0,
             **({"event_id": uuid.uuid4().hex} if with_ids else {})} for i in range(n)]


def test_a_killed_api_loses_no_acknowledged_event(stack: Stack, hot: HotStore, settings: Settings, tenant: str) -> None:
    acknowledged: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=settings.api_url, timeout=30, headers=bearer_headers(settings.admin_key)) as http:
            while not stop.is_set():
                events = batch(tenant, 50)
                try:
                    response = http.post("/events", json=events)  # the default mode: no ?sync
                except httpx.HTTPError as exc:
                    failures.append(type(exc).__name__)
                    time.sleep(0.05)
                    continue
                if response.status_code == 200:
                    acknowledged.extend(e["event_id"] for e in events)
                else:
                    failures.append(str(response.status_code))

    # Two clients for a second (dozens of requests of 50 events, a Kafka record per partition each): requests in
    # flight at the kill, and a backlog the session stream's micro-batches (64 Kafka records at most) drain in
    # seconds; every record more only lengthens that drain.
    threads = [threading.Thread(target=client, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(1)
    record = read_pid(settings.home / "run" / "api.pid")
    assert record is not None and record.alive()
    os.killpg(record.pid, signal.SIGKILL)  # mid-load: requests are in flight
    wait_for(lambda: not record.alive(), 10, "the API to die")
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join(40)
    acked = set(acknowledged)
    assert len(acked) >= 100 and failures, (len(acked), failures[:3])
    stack.up(["api"])

    in_kafka = set(kafka_event_ids(settings, tenant))
    assert acked <= in_kafka, f"{len(acked - in_kafka)} acknowledged events are not in Kafka"
    # The stream counts each of them once (events delivered but not acknowledged before the kill count too).
    print(f"\nkilled API: {len(acked)} events acknowledged, {len(in_kafka)} in Kafka, {len(failures)} failed requests")
    wait_for(lambda: len(hot_ids(hot, tenant)) >= len(in_kafka), 400, "the hot tier to catch up", interval=2)
    ids = hot_ids(hot, tenant)
    assert len(ids) == len(set(ids)) == len(in_kafka)


def test_a_batch_retried_after_a_503_counts_once(
    stack: Stack, api: httpx.Client, hot: HotStore, settings: Settings, tenant: str
) -> None:
    events = batch(tenant, 120, with_ids=False)  # no client ids: the Idempotency-Key makes them
    key = {"Idempotency-Key": uuid.uuid4().hex}
    api.post("/events", json=batch(tenant, 1)).raise_for_status()  # the producer knows the topic's partitions
    stack.down(["kafka"])
    try:
        started = time.monotonic()
        first = api.post("/events", json=events, headers=key, timeout=90)
        assert first.status_code == 503, first.text
        print(f"\n503 after {time.monotonic() - started:.1f}s: {first.json()['error'][:80]}…")
    finally:
        stack.up(["kafka"])
    try:
        wait_for(lambda: api.post("/events", json=events, headers=key).status_code == 200, 120, "the retry to be taken")
        wait_for(lambda: len(hot_ids(hot, tenant)) >= len(events) + 1, 400, "the hot tier", interval=2)
        # the first attempt's queued records, delivered after the broker came back, are processed by now
        wait_for(lambda: stream_caught_up(hot, settings), 120, "the stream to process everything Kafka holds")
        copies = kafka_event_ids(settings, tenant)
        ids = hot_ids(hot, tenant)
        assert len(ids) == len(set(ids)) == len(events) + 1
        print(f"retried batch: {len(copies) - 1} copies of its {len(events)} events in Kafka, counted once")
    finally:
        stack.up(["stream"])  # a no-op when the stream rode out the broker's absence


def test_the_first_batch_after_a_broker_restart_is_taken_without_a_retry(
    stack: Stack, api: httpx.Client, hot: HotStore, tenant: str
) -> None:
    """While partition leaders come back the producer keeps retrying within its delivery deadline: the
    client gets 200, not a 503 it would have to retry."""
    api.post("/events", json=batch(tenant, 1)).raise_for_status()  # a producer connected before the restart
    stack.down(["kafka"])
    stack.up(["kafka"])
    try:
        answer = api.post("/events", json=batch(tenant, 50), timeout=90)
        assert answer.status_code == 200, answer.text
        wait_for(lambda: len(hot_ids(hot, tenant)) >= 51, 400, "the hot tier", interval=2)
        assert len(hot_ids(hot, tenant)) == 51
    finally:
        stack.up(["stream"])
