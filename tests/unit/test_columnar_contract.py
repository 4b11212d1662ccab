"""The stream's column-wise shortcut of the contract gives exactly what the per-event rules give.

The truth is ``RecordContract(columnar=False)``: every record through ``events_of_record``, the
function ``POST /events`` shares. Both paths judge the same records (valid, broken in every field,
mixed in one record and in one batch) and must return the same rows in the same order.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa
import pytest

from common.events import normalize_event
from stream.columnar_contract import judge_plain, plain_items
from stream.contract import CONTRACT_ARROW_SCHEMA, RecordContract

NOW = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
KAFKA_TIME = datetime(2026, 11, 23, 11, 59, 30, 250000, tzinfo=UTC)
MAX_AGE, MAX_FUTURE = timedelta(days=30), timedelta(minutes=5)


def normalized(i: int, **overrides) -> dict:
    body = {"event": "page_view", "timestamp": "2026-11-23T11:58:00.000Z", "user_id": f"u{i}", "tenant": "acme",
            "event_id": f"id-{i}", "page": "/p", "country": "DE", "device": "mobile", "revenue": 1.5}
    event = normalize_event(body, now=KAFKA_TIME, max_age=MAX_AGE, max_future=MAX_FUTURE)
    event.update(overrides)
    return event


# Values a field may hold, the odd and broken ones included: each is tried in every field.
ODD_VALUES = [
    None, "", 0, 7, -3, 2**53 + 1, 2**62, 1.25, float("inf"), True, False, [1], {"a": 1}, "x" * 65, "x" * 129,
    "x" * 2049, "ünïcode", "a\n", "page_view", "bad name!", "2026-11-23T11:59:00Z", "2026-11-23T11:59:00.000Z",
    "2026-11-23T11:59:00.000+00:00", "2026-02-30T11:59:00.000Z", "2026-11-23T24:00:00.000Z",
    "2026-11-23T23:59:60.000Z", "0000-01-01T00:00:00.000Z", "0999-01-01T00:00:00.000Z", "2099-01-01T00:00:00.000Z",
    "1971-01-01T00:00:00.000Z", "2026-11-23T11:59:30.250Z", "２０２６-11-23T11:59:00.000Z", "{}", '{"b":2,"a":1}',
    '{"a": 1}', "[1]", "not json", '{"a":{"c":[1,2.5e3]}}', "12345",
]
FIELDS = ["tenant", "event", "timestamp", "event_id", "user_id", "page", "country", "device", "revenue", "properties",
          "received_at", "campaign"]


def batch_of(values: list[bytes | None], kafka_times: list[datetime | None] | None = None) -> pa.RecordBatch:
    n = len(values)
    times = kafka_times if kafka_times is not None else [KAFKA_TIME] * n
    return pa.record_batch({
        "value": pa.array(values, pa.binary()), "topic": pa.array(["events"] * n),
        "partition": pa.array([i % 3 for i in range(n)], pa.int32()),
        "offset": pa.array(range(100, 100 + n), pa.int64()),
        "timestamp": pa.array([None if t is None else t.replace(tzinfo=None) for t in times], pa.timestamp("us")),
    })


def both(batch: pa.RecordBatch) -> tuple[list[dict], list[dict]]:
    columnar = RecordContract(MAX_AGE, MAX_FUTURE).apply(batch, NOW)
    reference = RecordContract(MAX_AGE, MAX_FUTURE, columnar=False).apply(batch, NOW)
    assert columnar.schema == reference.schema == CONTRACT_ARROW_SCHEMA
    return columnar.to_pylist(), reference.to_pylist()


def shortcut_rows(values: list[bytes]) -> int:
    """How many events of ``values`` (records read at KAFKA_TIME) the column-wise path accepts."""
    items, rows, indices = [], [], []
    for row, value in enumerate(values):
        plain = plain_items(orjson.loads(value))
        for index, item in enumerate(plain or []):
            items.append(item)
            rows.append(row)
            indices.append(index)
    if not items:
        return 0
    fast, _ = judge_plain(items, rows, indices, [min(KAFKA_TIME, NOW)] * len(values), MAX_AGE, MAX_FUTURE)
    return 0 if fast is None else fast.num_rows


def test_api_records_take_the_shortcut_and_come_out_unchanged():
    records = [orjson.dumps([normalized(200 * r + i) for i in range(200)]) for r in range(5)]
    batch = batch_of(records)
    assert shortcut_rows(records) == 1000
    columnar, reference = both(batch)
    assert columnar == reference
    assert len(columnar) == 1000 and all(row["dead_letter"] is None for row in columnar)
    assert columnar[0] | {} == {**normalized(0), "kafka_partition": 0, "kafka_offset": 100, "kafka_index": 0,
                                "dead_letter": None}


@pytest.mark.parametrize("field", FIELDS)
def test_every_odd_value_of_every_field_is_judged_as_the_per_event_rules_judge_it(field):
    shortcut_taken = 0
    for k, value in enumerate(ODD_VALUES):  # one batch per value: a type the others lack does not hide the rest
        event = normalized(k)
        event[field] = value
        missing = normalized(3000 + k)
        missing.pop(field, None)
        records = [orjson.dumps([normalized(1000 + k), event, normalized(2000 + k)]),  # the odd one in the middle
                   orjson.dumps(event),  # alone, as a single-object record
                   orjson.dumps([missing]), orjson.dumps([normalized(4000 + k)])]
        columnar, reference = both(batch_of(records))
        assert columnar == reference, value
        shortcut_taken += shortcut_rows(records)
    assert shortcut_taken >= len(ODD_VALUES)  # at least the plain record of each batch went the column-wise way


def test_time_bounds_are_inclusive_exactly_as_the_per_event_rules():
    received = datetime(2026, 11, 23, 11, 59, 30, 250000, tzinfo=UTC)
    edges = [received - MAX_AGE, received - MAX_AGE - timedelta(milliseconds=1), received + MAX_FUTURE,
             received + MAX_FUTURE + timedelta(milliseconds=1)]
    records = [orjson.dumps([normalized(i, timestamp=t.isoformat(timespec="milliseconds").replace("+00:00", "Z"))])
               for i, t in enumerate(edges)]
    columnar, reference = both(batch_of(records))
    assert columnar == reference
    assert [row["dead_letter"] is None for row in columnar] == [True, False, True, False]
    assert shortcut_rows(records[0::2]) == 2  # the edges themselves are accepted column-wise


def test_the_reference_time_is_the_kafka_time_capped_at_the_stream_clock():
    future = NOW + timedelta(hours=1)
    event = normalized(1, timestamp="2026-11-23T12:04:00.000Z", received_at=None)
    records = [orjson.dumps([event])] * 4
    times = [None, datetime(1999, 1, 1, tzinfo=UTC), future, KAFKA_TIME]  # none, bogus, ahead of the stream, normal
    columnar, reference = both(batch_of(records, times))
    assert columnar == reference


def test_broken_records_and_plain_ones_in_one_batch_keep_the_record_order():
    values: list[bytes | None] = [orjson.dumps([normalized(1)]), None, b"\xff not json", b"42", b"[]",
                                  orjson.dumps([normalized(2), 5, normalized(3)]), orjson.dumps([normalized(4)]),
                                  b'{"event": "x"}', orjson.dumps([normalized(5, user_id=9)]), b"[[]]"]
    columnar, reference = both(batch_of(values))
    assert columnar == reference
    assert sum(row["dead_letter"] is not None for row in columnar) == 6  # None, \xff, 42, 5, {"event"}, []


def test_a_record_with_a_type_the_others_lack_goes_the_per_event_way_alone():
    # user_id a string in one record and an integer in another: Arrow cannot hold both in one column.
    values = [orjson.dumps([normalized(1)]), orjson.dumps([normalized(2, user_id=42)]), orjson.dumps([normalized(3)])]
    columnar, reference = both(batch_of(values))
    assert columnar == reference and len(columnar) == 3
    assert shortcut_rows(values) == 2  # the record with the integer goes the per-event way, the others do not


def test_random_mixtures_agree():
    rng = random.Random(16)
    values: list[bytes | None] = []
    for r in range(300):
        events = []
        for i in range(rng.randint(1, 12)):
            event = normalized(r * 100 + i)
            for _ in range(rng.choice([0, 0, 0, 1, 2])):
                field = rng.choice(FIELDS)
                if rng.random() < 0.3:
                    event.pop(field, None)
                else:
                    event[field] = rng.choice(ODD_VALUES)
            events.append(event)
        values.append(orjson.dumps(events if rng.random() < 0.8 else events[0]))
    for start in range(0, len(values), 50):  # batches of several sizes, as Spark hands them over
        columnar, reference = both(batch_of(values[start:start + 50]))
        assert columnar == reference


def test_the_dead_letter_query_gets_exactly_the_rejections():
    values: list[bytes | None] = [orjson.dumps([normalized(1), normalized(2, revenue="x")]), b"nope", None,
                                  orjson.dumps([normalized(3)]), orjson.dumps(normalized(4, timestamp=None))]
    batch = batch_of(values)
    reference = RecordContract(MAX_AGE, MAX_FUTURE, columnar=False).apply(batch, NOW).to_pylist()
    for columnar in (True, False):
        only = RecordContract(MAX_AGE, MAX_FUTURE, columnar=columnar, rejections_only=True).apply(batch, NOW)
        assert only.to_pylist() == [row for row in reference if row["dead_letter"] is not None]
        assert only.num_rows == 4
