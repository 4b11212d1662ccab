"""The contract's typed instants (``stream_typed_instants``): the same instants as the text, whatever path judged."""

from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa
import pytest

from common.events import normalize_event
from stream.contract import (
    CONTRACT_ARROW_SCHEMA,
    TYPED_CONTRACT_ARROW_SCHEMA,
    TYPED_CONTRACT_DDL,
    RecordContract,
    typed_instants,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LIMITS = {"max_age": timedelta(days=30), "max_future": timedelta(minutes=5)}


def parsed(text: str | None) -> datetime | None:
    """The independent truth: Python's own reading of the ISO-8601 text."""
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def kafka_rows(values: list[bytes | None]) -> pa.RecordBatch:
    n = len(values)
    return pa.record_batch({
        "value": pa.array(values, pa.binary()), "topic": pa.array(["events"] * n),
        "partition": pa.array([1] * n, pa.int32()), "offset": pa.array(range(n), pa.int64()),
        "timestamp": pa.array([NOW.replace(tzinfo=None) - timedelta(seconds=i) for i in range(n)], pa.timestamp("us")),
    })


def api_event(i: int, **overrides) -> dict:
    body = {"event": "page_view", "timestamp": f"2026-11-23T11:{i % 60:02d}:{i % 59:02d}.{i % 1000:03d}Z",
            "user_id": f"u{i}", "event_id": f"e{i}", **overrides}
    return normalize_event(body, now=NOW - timedelta(seconds=3), **LIMITS)


@pytest.mark.parametrize("columnar", [True, False])
def test_typed_rows_hold_the_instants_of_the_text_rows_and_nothing_else_changes(columnar, monkeypatch):
    values = [
        orjson.dumps([api_event(i) for i in range(50)]),  # the API's records: the column-wise path
        orjson.dumps({"event": "signup", "timestamp": "2026-11-23T13:59:00+02:00", "user_id": "x"}),  # per event
        orjson.dumps([api_event(60), {"event": "bad name!", "timestamp": "2026-11-23T11:00:00Z", "user_id": "y"}]),
        b"not json",
        None,
    ]
    batch = kafka_rows(values)
    now = datetime.now(UTC)
    monkeypatch.setattr("stream.contract.datetime", type("Fixed", (datetime,), {"now": staticmethod(lambda tz: now)}))
    text = RecordContract(**LIMITS, columnar=columnar).apply(batch, now)
    [typed] = list(RecordContract(**LIMITS, columnar=columnar, instants=True)([batch]))

    assert text.schema == CONTRACT_ARROW_SCHEMA and typed.schema == TYPED_CONTRACT_ARROW_SCHEMA
    assert typed.num_rows == text.num_rows > 50
    for name in CONTRACT_ARROW_SCHEMA.names:
        if name in ("timestamp", "received_at"):
            assert typed.column(name).to_pylist() == [parsed(t) for t in text.column(name).to_pylist()]
        else:
            assert typed.column(name).equals(text.column(name))
    assert text.column("dead_letter").null_count < text.num_rows  # rejections came through, with null instants


@pytest.mark.parametrize("text", ["1970-01-01T00:00:00.000Z", "1969-12-31T23:59:59.999Z", "0001-01-01T00:00:00.000Z",
                                  "2024-02-29T23:59:59.999Z", "9999-12-31T23:59:59.999Z", "2026-11-23T10:00:00.123Z"])
def test_every_canonical_instant_is_read_to_the_millisecond(text):
    rows = pa.RecordBatch.from_pylist([{"timestamp": text, "received_at": text}], schema=CONTRACT_ARROW_SCHEMA)
    typed = typed_instants(rows).to_pylist()[0]
    assert typed["timestamp"] == typed["received_at"] == parsed(text)


def test_the_spark_schema_types_the_two_instants_only():
    fields = dict(field.split(" ") for field in TYPED_CONTRACT_DDL.split(", "))
    assert [name for name, kind in fields.items() if kind == "timestamp"] == ["timestamp", "received_at"]
    assert list(fields) == CONTRACT_ARROW_SCHEMA.names
