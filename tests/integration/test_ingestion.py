"""Bad input: the valid events of a batch go through, each invalid one is dead-lettered with its reason."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from common.settings import Settings

pytestmark = pytest.mark.integration


def dlq_records(settings: Settings, since: dict[TopicPartition, int]) -> list[dict]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=3000)
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        return [json.loads(m.value) for m in consumer]
    finally:
        consumer.close()


def dlq_offsets(settings: Settings) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        parts = [TopicPartition(settings.kafka_dlq_topic, p) for p in consumer.partitions_for_topic(
            settings.kafka_dlq_topic)]
        return consumer.end_offsets(parts)
    finally:
        consumer.close()


def test_a_mixed_batch_accepts_the_valid_and_dead_letters_each_invalid_one(
    stack, api: httpx.Client, settings: Settings, tenant: str
) -> None:
    now = datetime.now(UTC).isoformat()
    marker = uuid.uuid4().hex
    good = {"tenant": tenant, "event": "page_view", "timestamp": now, "user_id": 1, "page": "/ok"}
    batch = [
        good,
        {"tenant": tenant, "event": "page_view", "user_id": 2, "marker": marker},  # no timestamp
        {**good, "user_id": 3},
        {**good, "timestamp": "not a time", "marker": marker},
        {**good, "revenue": "free", "marker": marker},
        {**good, "user_id": 4},
    ]
    before = dlq_offsets(settings)
    response = api.post("/events", json=batch, params={"sync": "true"})
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (3, 3)
    assert [e["index"] for e in body["errors"]] == [1, 3, 4]
    assert "missing required field(s): timestamp" in body["errors"][0]["reason"]
    assert "not ISO-8601" in body["errors"][1]["reason"]
    assert "revenue must be a finite number" in body["errors"][2]["reason"]

    dead = [r for r in dlq_records(settings, before) if isinstance(r["event"], dict)
            and r["event"].get("marker") == marker]
    assert sorted((r["index"], r["reason"]) for r in dead) == sorted(
        (e["index"], e["reason"]) for e in body["errors"])
    assert [r["event"] for r in sorted(dead, key=lambda r: r["index"])] == [batch[1], batch[3], batch[4]]


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"event": "page_view"}', 422, "must be a JSON array"),
        (json.dumps([{}] * 1001).encode(), 413, "the limit is 1000"),
        (b"[" + b'"x",' * 400_000 + b'"x"]', 413, "larger than 1048576 bytes"),
    ],
)
def test_a_body_that_is_not_a_batch_is_refused_with_a_clear_4xx(api: httpx.Client, content, status, message):
    response = api.post("/events", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert message in response.json()["error"]


def test_queries_refuse_unknown_names_with_a_400(api: httpx.Client):
    for params, message in [({"metric": "nope"}, "unknown metric"),
                            ({"metric": "events", "group_by": "password"}, "unknown dimension"),
                            ({"metric": "events", "range": "30d", "granularity": "minute"}, "reach back 7 days")]:
        response = api.get("/v1/timeseries", params=params)
        assert response.status_code == 400
        assert message in response.json()["error"]
