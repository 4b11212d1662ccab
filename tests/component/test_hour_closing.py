"""Closing a quiet hour by the wall clock against the real hot tier (embedded chDB, real migrations).

``batch.hour_state.hour_state`` reads ``stream_progress`` as the stream writes it, seals the hour in
``hour_closings`` and re-reads; the stream's hot writer reads the seal back. Kafka's end offsets come
from a function here (the integration test ``tests/integration/test_quiet_hours.py`` reads a real
broker); they are what the stream's committed offsets are compared with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from batch.hour_state import CLOSINGS_TABLE, hour_state
from common.hot_store import HotStore
from stream.job import HotTierWriter

DELAY = timedelta(minutes=10)
GRACE = timedelta(minutes=5)
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
END = HOUR + timedelta(hours=1)
PROGRESS = pa.schema([("query_name", pa.string()), ("batch_id", pa.uint64()),
                      ("finished_at", pa.timestamp("ms", "UTC")), ("input_rows", pa.uint64()),
                      ("late_rows", pa.uint64()), ("duration_ms", pa.uint64()),
                      ("watermark", pa.timestamp("ms", "UTC")), ("end_offsets", pa.string())])


@pytest.fixture()
def quiet_hot(hot: HotStore) -> Iterator[HotStore]:
    """The shared store without any stream progress or seal (nothing else in this tier writes them)."""
    for table in ("stream_progress", CLOSINGS_TABLE):
        hot.command(f"TRUNCATE TABLE {table}")
    yield hot
    for table in ("stream_progress", CLOSINGS_TABLE):
        hot.command(f"TRUNCATE TABLE {table}")


def offsets(*ends: int) -> dict[str, dict[str, int]]:
    return {"events": {str(p): n for p, n in enumerate(ends)}}


def committed(store: HotStore, query: str, batch_id: int, ends: dict[str, dict[str, int]]) -> None:
    """A micro-batch of ``query`` as the stream's progress listener records it (the watermark before the hour)."""
    store.insert_arrow("stream_progress", pa.table({
        "query_name": [query], "batch_id": [batch_id], "finished_at": [datetime.now(UTC)], "input_rows": [1],
        "late_rows": [0], "duration_ms": [5], "watermark": [HOUR - timedelta(hours=1)],
        "end_offsets": [json.dumps(ends)]}, schema=PROGRESS))


def state(store: HotStore, kafka: list[dict[str, dict[str, int]]], now: datetime | None = None):
    """The hour's state; ``kafka`` lists what successive reads of the topic's end offsets return."""
    reads = iter(kafka)
    return hour_state(store, HOUR, DELAY, now=now, kafka_ends=lambda: next(reads), grace=GRACE)


def seals(store: HotStore) -> list[tuple[datetime, str]]:
    rows = store.query_arrow(f"SELECT closed_through, end_offsets_after FROM {CLOSINGS_TABLE} ORDER BY recorded_at")
    return [(r["closed_through"].replace(tzinfo=UTC), r["end_offsets_after"]) for r in rows.to_pylist()]


def test_a_quiet_hour_closes_by_the_wall_clock_only_once_the_stream_caught_up_and_then_the_hot_sink_drops_it(
        quiet_hot: HotStore) -> None:
    writer = HotTierWriter(quiet_hot, "component", lambda _: None)
    committed(quiet_hot, "hot", 1, offsets(10, 4))
    committed(quiet_hot, "landing", 1, offsets(10, 4))

    early = state(quiet_hot, [], now=END + DELAY + GRACE - timedelta(seconds=1))
    assert not early.closed and "wall clock closes it from" in early.reason

    # records wait in Kafka (the stream is down or behind): open, and nothing is sealed
    waiting = state(quiet_hot, [offsets(12, 4)])
    assert not waiting.closed and "hot events/0: 10 < 12" in waiting.reason and "landing events/0" in waiting.reason
    assert seals(quiet_hot) == [] and writer._closed_through() is None

    # the stream processed them, then a record arrives while the seal is written: its micro-batch is in flight
    committed(quiet_hot, "hot", 2, offsets(12, 4))
    committed(quiet_hot, "landing", 2, offsets(12, 4))
    in_flight = state(quiet_hot, [offsets(12, 4), offsets(13, 4)])
    assert not in_flight.closed and "sealed by the wall clock" in in_flight.reason
    assert seals(quiet_hot) == [(END, ""), (END, json.dumps(offsets(13, 4), sort_keys=True))]
    assert writer._closed_through() == END  # from now on the hot sink drops the hour's events

    committed(quiet_hot, "hot", 3, offsets(13, 4))
    assert not state(quiet_hot, []).closed  # the landing has not committed record 12 of partition 0 yet
    committed(quiet_hot, "landing", 3, offsets(13, 4))
    closed = state(quiet_hot, [])  # no Kafka read needed any more: the seal's offsets decide
    assert closed.closed and "closed by the wall clock" in closed.reason
    assert len(seals(quiet_hot)) == 2

    # an earlier hour is covered by the same seal; a later one is not
    earlier = HOUR - timedelta(hours=5)
    assert hour_state(quiet_hot, earlier, DELAY, kafka_ends=lambda: offsets(99, 99), grace=GRACE).closed
    later = HOUR + timedelta(hours=1)
    assert not hour_state(quiet_hot, later, DELAY, kafka_ends=lambda: offsets(14, 4), grace=GRACE).closed
    assert writer._closed_through() == END  # the later hour was not sealed: the stream is behind


def test_without_kafka_a_quiet_hour_stays_open_with_the_reason(quiet_hot: HotStore) -> None:
    committed(quiet_hot, "hot", 1, offsets(3))
    committed(quiet_hot, "landing", 1, offsets(3))

    def unreachable() -> dict[str, dict[str, int]]:
        raise RuntimeError("Kafka is not reachable at 127.0.0.1:1")

    result = hour_state(quiet_hot, HOUR, DELAY, kafka_ends=unreachable, grace=GRACE)
    assert not result.closed and "Kafka is not reachable" in result.reason
    assert not hour_state(quiet_hot, HOUR, DELAY, grace=GRACE).closed  # no Kafka reader: never by the wall clock
    assert seals(quiet_hot) == []
