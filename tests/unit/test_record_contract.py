"""The contract as the stream applies it to Kafka records: every rule of docs/ingestion-contract.md."""

from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa
import pytest

from common.events import MAX_DEAD_LETTER_BYTES, dead_letter, events_of_record, normalize_event
from stream.contract import CONTRACT_ARROW_SCHEMA, RecordContract

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LIMITS = {"max_age": timedelta(days=30), "max_future": timedelta(minutes=5)}


def event(**overrides):
    body = {"event": "page_view", "timestamp": "2026-11-23T11:59:00Z", "user_id": "u1"}
    body.update(overrides)
    return body


def judge(value, kafka_time=NOW, now=NOW, offset=7):
    return events_of_record(value, partition=2, offset=offset, kafka_time=kafka_time, now=now, **LIMITS)


def test_a_single_event_record_gets_the_defaults_of_the_api():
    good, dead = judge(orjson.dumps(event()))
    assert dead == []
    [(index, out)] = good
    assert index == 0
    assert out["tenant"] == "default"
    assert out["revenue"] == 0.0
    assert out["received_at"] == "2026-11-23T12:00:00.000Z"  # the record's Kafka timestamp
    assert out["event_id"] == "kafka:events:2:7:0"  # deterministic: a replay yields the same id


def test_an_event_normalized_by_the_api_passes_unchanged():
    api = normalize_event(event(revenue=3, properties={"b": 1}, campaign="x"), now=NOW - timedelta(seconds=2),
                          **LIMITS)
    good, dead = judge(orjson.dumps([api]))
    assert dead == [] and good == [(0, api)]


def test_an_array_keeps_its_good_events_and_dead_letters_each_bad_one_with_its_index():
    good, dead = judge(orjson.dumps([event(user_id="a"), event(event="x" * 65), 5, event(user_id="b")]))
    assert [(i, e["user_id"]) for i, e in good] == [(0, "a"), (3, "b")]
    assert [(d.index, d.reason.split(" ")[0]) for d in dead] == [(1, "event"), (2, "an")]
    assert orjson.loads(dead[1].raw) == 5


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfenot json", "record is not valid JSON"),
        (b"", "record is not valid JSON"),
        (None, "record has no value"),
        (b"42", "got number"),
        (b'"page_view"', "got string"),
        (orjson.dumps(event(timestamp=None)), "missing required field(s): timestamp"),
        (orjson.dumps({"timestamp": "2026-11-23T11:59:00Z"}), "missing required field(s): event, user_id"),
        (orjson.dumps(event(user_id=[1])), "user_id must be a string or an integer"),
        (orjson.dumps(event(revenue="10")), "revenue must be a finite number"),
        (orjson.dumps(event(timestamp=1700000000)), "timestamp must be an ISO-8601 string"),
        (orjson.dumps(event(timestamp="2099-01-01T00:00:00Z")), "in the future"),
        (orjson.dumps(event(timestamp="1971-01-01T00:00:00Z")), "older than the accepted 30 days"),
        (orjson.dumps(event(event="e" * 5000)), "event must be 1-64 characters"),
        (orjson.dumps(event(page="/" * 3000)), "page is longer than 2048"),
        (orjson.dumps(event(tenant=7)), "tenant must be a string"),
        (orjson.dumps(event(properties="[1]")), "properties must be a JSON object"),
    ],
)
def test_each_broken_rule_is_dead_lettered_with_its_reason(value, reason):
    good, dead = judge(value)
    assert good == []
    assert len(dead) == 1 and dead[0].index == -1 and reason in dead[0].reason
    assert dead[0].raw == (value or b"")


def test_the_future_bound_follows_the_kafka_timestamp_not_the_producer_clock():
    # Stream far behind (now is later than the record's time): judged as when it was produced.
    good, dead = judge(orjson.dumps(event(timestamp="2026-11-23T12:04:00Z")), now=NOW + timedelta(hours=2))
    assert len(good) == 1 and dead == []
    good, dead = judge(orjson.dumps(event(timestamp="2026-11-23T12:06:00Z")), now=NOW + timedelta(hours=2))
    assert good == [] and "in the future" in dead[0].reason
    # A record stamped in the future (a producer's clock, on a CreateTime topic) is capped at the stream's clock.
    _, dead = judge(orjson.dumps(event(timestamp="2099-01-01T00:00:00Z")), kafka_time=datetime(2099, 1, 1, tzinfo=UTC))
    assert "in the future" in dead[0].reason


def test_a_dead_letter_says_where_it_came_from_and_truncates_large_bytes():
    raw = b"{" + b"x" * 10_000
    _, [dead] = judge(raw)
    letter = dead_letter(dead, topic="events", partition=2, offset=7, kafka_time=NOW, now=NOW)
    assert (letter["partition"], letter["offset"], letter["index"]) == (2, 7, -1)
    assert letter["reason_class"] == "not_json"
    assert letter["raw_truncated"] and letter["raw_bytes"] == len(raw)
    assert letter["raw"] == raw[:MAX_DEAD_LETTER_BYTES].decode()
    _, [binary] = judge(b"\xff\xfe")
    assert dead_letter(binary, topic="events", partition=0, offset=1, kafka_time=None, now=NOW)["raw_encoding"] == (
        "base64")


def test_the_spark_function_emits_event_rows_and_dead_letter_rows():
    kafka = pa.RecordBatch.from_pydict({
        "value": [orjson.dumps([event(user_id="a"), {"event": "x"}]), b"nope"],
        "topic": ["events", "events"],
        "partition": pa.array([0, 1], pa.int32()),
        "offset": pa.array([10, 11], pa.int64()),
        "timestamp": pa.array([NOW, NOW], pa.timestamp("us", tz="UTC")),
    })
    rows = RecordContract(**LIMITS).apply(kafka, NOW).to_pylist()
    assert pa.RecordBatch.from_pylist(rows, schema=CONTRACT_ARROW_SCHEMA).num_rows == 3
    valid = [r for r in rows if r["dead_letter"] is None]
    assert [(r["user_id"], r["kafka_partition"], r["kafka_offset"], r["kafka_index"]) for r in valid] == [
        ("a", 0, 10, 0)]
    letters = [orjson.loads(r["dead_letter"]) for r in rows if r["dead_letter"] is not None]
    assert sorted((d["partition"], d["offset"], d["index"], d["reason_class"]) for d in letters) == [
        (0, 10, 1, "missing_field"), (1, 11, -1, "not_json")]
