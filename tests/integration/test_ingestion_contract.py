"""One event contract for every producer: a plain Kafka client writes straight into ``events``.

Walks the table of docs/ingestion-contract.md: valid single-event records without ``revenue`` are
counted by the speed layer (before any batch run); each record or event that breaks a rule is in the
dead-letter topic with its reason and source offset and is counted in GET /metrics; a 2099 event does
not move the watermark, so events sent afterwards are visible through the query API within seconds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from common.events import MAX_DEAD_LETTER_BYTES
from common.hot_store import HotStore
from common.settings import Settings
from demo.ground_truth import minute_of
from tests.integration.conftest import wait_for
from tests.integration.hot_truth import hot_minutes, stream_caught_up

pytestmark = pytest.mark.integration

FRESHNESS_TARGET_S = 5.0  # README: freshness p95 ≤ 5 s


@dataclass
class Sent:
    case: str
    partition: int
    offset: int
    dead: dict[int, str]  # index in the record (-1: whole record) → a phrase of the expected reason


def iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def offsets(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        return consumer.end_offsets([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
    finally:
        consumer.close()


def read_since(settings: Settings, since: dict[TopicPartition, int]) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=3000)
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        return [json.loads(m.value) for m in consumer]
    finally:
        consumer.close()


def dead_letter_total(api: httpx.Client) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = api.get("/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "lakehouse_stream_dead_letter_events_total")


def hot_events(hot: HotStore, tenant: str) -> int:
    return hot.query_arrow("SELECT sum(events) AS n FROM rollups_1m WHERE tenant = {t:String}",
                           {"t": tenant}).to_pylist()[0]["n"] or 0


def test_every_record_any_producer_writes_is_counted_or_dead_lettered(
    stack, api: httpx.Client, hot: HotStore, settings: Settings, tenant: str
) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    now = datetime.now(UTC)
    dlq_before = offsets(settings, settings.kafka_dlq_topic)
    metric_before = dead_letter_total(api)
    sent: list[Sent] = []
    truth: list[dict[str, Any]] = []  # the valid events, as the ground truth

    def send(case: str, value: bytes | None, dead: dict[int, str] | None = None, valid: list[dict] = ()) -> Sent:
        meta = producer.send(settings.kafka_topic, value=value, key=None if value is not None else b"tombstone"
                             ).get(timeout=30)
        record = Sent(case, meta.partition, meta.offset, dead or {})
        sent.append(record)
        truth.extend(valid)
        return record

    def good(i: int, **extra: Any) -> dict[str, Any]:
        return {"tenant": tenant, "event": "page_view", "timestamp": iso(now - timedelta(seconds=i % 90)),
                "user_id": f"u{i % 37}", "page": "/contract", **extra}

    # Valid single-event records without revenue (the API's default 0 applies).
    for i in range(120):
        body = good(i, event_id=f"{tenant}-{i}")
        send("valid single event, no revenue", json.dumps(body).encode(), valid=[body])
    no_tenant_id = f"{tenant}-no-tenant"
    send("valid, no tenant → default", json.dumps({**good(0), "tenant": None, "event_id": no_tenant_id}).encode())
    no_id = send("valid, no event_id → kafka:<topic>:<p>:<o>:0", json.dumps(good(1)).encode(), valid=[good(1)])

    # Each rule broken in turn (one record each).
    cases: list[tuple[str, bytes | None, str]] = [
        ("not JSON", b"page_view,2026-11-26,u1", "record is not valid JSON"),
        ("not UTF-8", b"\xff\xfe\x00binary", "record is not valid JSON"),
        ("empty value (tombstone)", None, "record has no value"),
        ("JSON number", b"42", "got number"),
        ("JSON string", b'"page_view"', "got string"),
        ("empty object", b"{}", "missing required field(s): event, timestamp, user_id"),
        ("missing event", json.dumps({**good(2), "event": None}).encode(), "missing required field(s): event"),
        ("missing timestamp", json.dumps({k: v for k, v in good(3).items() if k != "timestamp"}).encode(),
         "missing required field(s): timestamp"),
        ("missing user_id", json.dumps({k: v for k, v in good(4).items() if k != "user_id"}).encode(),
         "missing required field(s): user_id"),
        ("user_id an object", json.dumps(good(5, user_id={"id": 1})).encode(),
         "user_id must be a string or an integer"),
        ("revenue a string", json.dumps(good(6, revenue="12.5")).encode(), "revenue must be a finite number"),
        ("timestamp a number", json.dumps(good(7, timestamp=1764115200)).encode(), "must be an ISO-8601 string"),
        ("timestamp not ISO-8601", json.dumps(good(8, timestamp="yesterday")).encode(), "is not ISO-8601"),
        ("timestamp in 2099", json.dumps(good(9, timestamp="2099-01-01T00:00:00Z")).encode(), "in the future"),
        ("timestamp 10 min ahead", json.dumps(good(10, timestamp=iso(now + timedelta(minutes=10)))).encode(),
         "in the future"),
        ("timestamp in 1971", json.dumps(good(11, timestamp="1971-03-01T00:00:00Z")).encode(),
         "older than the accepted"),
        ("country a number", json.dumps(good(12, country=49)).encode(), "country must be a string"),
        ("tenant a number", json.dumps(good(13, tenant=7)).encode(), "tenant must be a string"),
        ("properties a list", json.dumps(good(14, properties=[1, 2])).encode(), "properties must be a JSON object"),
        ("5,000-character name", json.dumps(good(15, event="e" * 5000)).encode(), "event must be 1-64 characters"),
        ("3,000-character page", json.dumps(good(16, page="/" + "p" * 3000)).encode(), "page is longer than 2048"),
        ("200-character user_id", json.dumps(good(17, user_id="u" * 200)).encode(), "user_id is longer than 128"),
        ("100 KB of garbage", b"<" + b"x" * 100_000, "record is not valid JSON"),
    ]
    for case, value, reason in cases:
        send(case, value, {-1: reason})
    mixed = [good(20, event_id=f"{tenant}-a0"), {"event": "page_view", "tenant": tenant, "user_id": "u"},
             good(21, event_id=f"{tenant}-a2"), good(22, timestamp="2099-06-01T00:00:00Z"), "not an event",
             good(23, event_id=f"{tenant}-a5")]
    send("array of good and bad events", json.dumps(mixed).encode(),
         {1: "missing required field(s): timestamp", 3: "in the future", 4: "an event must be a JSON object"},
         valid=[mixed[0], mixed[2], mixed[5]])
    producer.flush()
    sent_at = time.monotonic()

    # Valid events counted exactly, per minute, by the speed layer (no batch run happens in this test).
    wait_for(lambda: hot_events(hot, tenant) >= len(truth), 120, "the valid events in the hot tier")
    expected: dict[datetime, int] = {}
    for body in truth:
        expected[minute_of(body["timestamp"])] = expected.get(minute_of(body["timestamp"]), 0) + 1
    minutes = hot_minutes(hot, tenant)
    assert {m: r["events"] for m, r in minutes.items()} == expected
    assert all(r["revenue"] == 0 for r in minutes.values())
    raw = hot.query_arrow("SELECT event_id, tenant, revenue, received_at FROM events_raw WHERE event_id IN "
                          "({a:String}, {b:String})", {"a": no_tenant_id, "b": f"kafka:{settings.kafka_topic}:"
                                                       f"{no_id.partition}:{no_id.offset}:0"}).to_pylist()
    assert {r["event_id"]: r["tenant"] for r in raw} == {no_tenant_id: "default",
                                                        f"kafka:events:{no_id.partition}:{no_id.offset}:0": tenant}
    assert all(r["received_at"] is not None and r["received_at"].year > 2000 for r in raw)

    # Every invalid record or event is in the dead-letter topic with its reason and source offset.
    expected_dead = {(s.partition, s.offset, index): (s.case, reason) for s in sent for index, reason in s.dead.items()}
    mine = {(s.partition, s.offset) for s in sent}

    def dead_letters() -> dict[tuple[int, int, int], dict[str, Any]]:
        letters = [d for d in read_since(settings, dlq_before) if d.get("source") == "stream"
                   and (d["partition"], d["offset"]) in mine]
        return {(d["partition"], d["offset"], d["index"]): d for d in letters}

    wait_for(lambda: len(dead_letters()) >= len(expected_dead), 90, "the dead letters", interval=2)
    letters = dead_letters()
    assert set(letters) == set(expected_dead)
    for key, (case, reason) in expected_dead.items():
        assert reason in letters[key]["reason"], (case, letters[key]["reason"])
    garbage = next(d for k, d in letters.items() if expected_dead[k][0] == "100 KB of garbage")
    assert garbage["raw_truncated"] and garbage["raw_bytes"] == 100_001
    assert len(garbage["raw"]) == MAX_DEAD_LETTER_BYTES
    binary = next(d for k, d in letters.items() if expected_dead[k][0] == "not UTF-8")
    assert binary["raw_encoding"] == "base64"

    # The metrics count them (the API samples the hot tier every few seconds).
    wait_for(lambda: dead_letter_total(api) - metric_before >= len(expected_dead), 60,
             "lakehouse_stream_dead_letter_events to count the dead letters", interval=1)
    assert dead_letter_total(api) - metric_before == len(expected_dead)

    # The 2099 events did not move the watermark: events sent now are visible within the freshness target.
    watermark = hot.query_arrow("SELECT max(watermark) AS w FROM stream_progress WHERE query_name = 'hot'"
                                ).to_pylist()[0]["w"]
    assert watermark is not None and watermark.replace(tzinfo=UTC) < datetime.now(UTC)
    after = [{"tenant": tenant, "event": "after_check", "timestamp": iso(datetime.now(UTC)), "user_id": f"x{i}"}
             for i in range(20)]
    started = time.perf_counter()
    # One record (the test stack reads at most 64 records per micro-batch, so that tests can kill the stream
    # mid-run: one record is one micro-batch whatever else is in flight).
    producer.send(settings.kafka_topic, value=json.dumps(after).encode())
    producer.flush()
    producer.close()
    params = {"metric": "events", "tenant": tenant, "range": "15m", "filter": "event:after_check"}

    def visible() -> bool:
        series = api.get("/v1/timeseries", params=params).json().get("series", [])
        return bool(series) and sum(p[1] for p in series[0]["points"]) == len(after)

    wait_for(visible, 60, "the events sent after the bad ones", interval=0.1)
    seconds = time.perf_counter() - started
    print(f"\ncontract walk: {len(sent)} records, {len(truth)} valid events, {len(expected_dead)} dead letters "
          f"(all in the DLQ {time.monotonic() - sent_at:.1f}s after sending); fresh events visible in {seconds:.2f}s")
    assert seconds <= FRESHNESS_TARGET_S


def test_two_tenants_with_the_same_event_id_are_both_counted(
    stack, api: httpx.Client, hot: HotStore, settings: Settings, tenant: str
) -> None:
    other = f"{tenant}-b"
    now = iso(datetime.now(UTC))
    shared = [f"shared-{tenant}-{i}" for i in range(10)]
    body = [{"tenant": t, "event": "signup", "timestamp": now, "user_id": "u1", "event_id": i}
            for t in (tenant, other) for i in shared]
    assert api.post("/events", json=body).json()["accepted"] == 20
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for i in shared:  # the same ids again, straight into Kafka: duplicates of each tenant's own events
        producer.send(settings.kafka_topic, value=json.dumps({**body[0], "event_id": i}).encode())
    producer.flush()
    producer.close()
    wait_for(lambda: hot_events(hot, tenant) >= 10 and hot_events(hot, other) >= 10, 90, "both tenants' events")
    # the duplicates, had they been counted, show once the stream has processed everything Kafka holds
    wait_for(lambda: stream_caught_up(hot, settings), 120, "the stream to process everything Kafka holds")
    assert (hot_events(hot, tenant), hot_events(hot, other)) == (10, 10)
