"""When an hour may be restated (``batch.hour_state.judge_hour``, ``judge_quiet_hour``), how the hot sink drops
events of hours closed by the wall clock, and how the stream treats hot-store errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from batch.hour_state import judge_hour, judge_quiet_hour, offsets_behind, parse_offsets
from common.events import EVENT_ARROW_SCHEMA
from common.hot_store import HotStoreError, error_kind
from stream.job import drop_closed
from stream.retry import TRANSIENT_ATTEMPTS, PermanentHotStoreError, with_retry

HOUR = datetime(2026, 11, 20, 10, tzinfo=UTC)
END = HOUR + timedelta(hours=1)
DELAY = timedelta(minutes=10)


def offsets(**partitions: int) -> str:
    return json.dumps({"events": {p.removeprefix("p"): o for p, o in partitions.items()}})


def judge(closing: datetime | None, hot: str | None, landing: str | None, has_progress: bool = True,
          now: datetime = END + timedelta(hours=2)):
    return judge_hour(HOUR, closing, hot, landing, has_progress, now, DELAY)


def test_an_hour_is_open_until_the_watermark_passes_its_end() -> None:
    state = judge(None, offsets(p0=10), offsets(p0=10))
    assert not state.closed and "watermark has not passed" in state.reason


def test_an_hour_is_open_while_the_landing_lags_behind_what_the_hot_sink_counted() -> None:
    state = judge(END, offsets(p0=100, p1=50), offsets(p0=100, p1=49))
    assert not state.closed
    assert "events/1: 49 < 50" in state.reason and "events/0" not in state.reason


def test_an_hour_is_closed_once_past_the_watermark_and_the_landing_caught_up() -> None:
    assert judge(END, offsets(p0=100, p1=50), offsets(p0=120, p1=50)).closed
    # the hot sink never ran with a watermark before the hour's end: nothing of the hour to wait for
    assert judge(END, "", offsets(p0=1)).closed


def test_a_partition_the_landing_never_read_counts_as_behind() -> None:
    assert offsets_behind(parse_offsets(offsets(p0=5)), parse_offsets(offsets(p0=5, p2=1))) == ["events/2: none < 1"]


def test_without_speed_layer_progress_the_wall_clock_decides() -> None:
    assert not judge(None, None, None, has_progress=False, now=END + DELAY).closed
    assert judge(None, None, None, has_progress=False, now=END + DELAY + timedelta(minutes=5)).closed


GRACE = timedelta(minutes=5)
READY = END + DELAY + GRACE  # from then on a quiet hour may close by the wall clock


def quiet(now: datetime, hot: str | None, landing: str | None, kafka: str | None, sealed: str | None = None):
    return judge_quiet_hour(HOUR, now, DELAY, GRACE, hot, landing, parse_offsets(kafka) if kafka else None, sealed)


def test_a_quiet_hour_stays_open_until_its_end_plus_watermark_plus_grace() -> None:
    verdict = quiet(READY - timedelta(seconds=1), offsets(p0=5), offsets(p0=5), offsets(p0=5))
    assert verdict.action == "open" and f"{READY:%Y-%m-%d %H:%M}" in verdict.reason


def test_a_quiet_hour_is_sealed_once_the_stream_has_processed_everything_kafka_holds() -> None:
    verdict = quiet(READY, offsets(p0=5, p1=7), offsets(p0=5, p1=7), offsets(p0=5, p1=7, p2=0))
    assert verdict.action == "seal"  # an empty partition (end offset 0) holds nothing to wait for


@pytest.mark.parametrize(("hot", "landing", "behind"), [
    (offsets(p0=5, p1=6), offsets(p0=5, p1=7), "hot events/1: 6 < 7"),  # a hot micro-batch in flight, or lagging
    (offsets(p0=5, p1=7), offsets(p0=4, p1=7), "landing events/0: 4 < 5"),  # the landing's trigger not fired yet
    (offsets(p0=5), offsets(p0=5), "hot events/1: none < 7"),  # a partition the stream never read
])
def test_a_quiet_hour_stays_open_while_records_wait_in_kafka(hot: str, landing: str, behind: str) -> None:
    verdict = quiet(READY + timedelta(hours=3), hot, landing, offsets(p0=5, p1=7))
    assert verdict.action == "open" and behind in verdict.reason and "down, behind" in verdict.reason


def test_a_quiet_hour_is_not_judged_without_kafkas_end_offsets() -> None:
    assert quiet(READY, offsets(p0=5), offsets(p0=5), None).action == "open"


def test_a_sealed_hour_closes_once_both_queries_committed_what_kafka_held_after_the_seal() -> None:
    sealed = offsets(p0=9, p1=7)
    waiting = quiet(READY, offsets(p0=8, p1=7), offsets(p0=9, p1=7), None, sealed)
    assert waiting.action == "open" and "hot events/0: 8 < 9" in waiting.reason and "sealed" in waiting.reason
    assert quiet(READY, offsets(p0=9, p1=7), offsets(p0=12, p1=7), None, sealed).action == "closed"
    # once sealed, newer records in Kafka do not reopen it: batches holding them read the seal
    assert quiet(READY, offsets(p0=9, p1=7), offsets(p0=9, p1=7), offsets(p0=50, p1=70), sealed).action == "closed"


def test_the_hot_sink_drops_events_older_than_the_newest_seal() -> None:
    times = [END - timedelta(minutes=1), END - timedelta(milliseconds=1), END, END + timedelta(minutes=3)]
    raw = pa.table({name: [None] * len(times) for name in EVENT_ARROW_SCHEMA.names}, schema=EVENT_ARROW_SCHEMA)
    raw = raw.set_column(raw.schema.get_field_index("timestamp"), "timestamp",
                         pa.array(times, type=pa.timestamp("us", tz="UTC")))  # Spark's toArrow gives microseconds
    assert drop_closed(raw, None).num_rows == 4
    assert drop_closed(raw, END).column("timestamp").to_pylist() == times[2:]


def test_unreadable_offsets_are_treated_as_unknown() -> None:
    assert parse_offsets("not json") == {} and parse_offsets("[1]") == {} and parse_offsets(None) == {}


@pytest.mark.parametrize(("message", "kind"), [
    ("Code: 53. DB::Exception: Type mismatch in IN or VALUES section. (TYPE_MISMATCH)", "permanent"),
    ("Code: 60. DB::Exception: Table default.nope does not exist. (UNKNOWN_TABLE)", "permanent"),
    ("ArrowInvalid: Schema at index 0 was different", "permanent"),
    ("Code: 241. DB::Exception: Memory limit exceeded (MEMORY_LIMIT_EXCEEDED)", "transient"),
    ("Code: 252. DB::Exception: Too many parts (TOO_MANY_PARTS)", "transient"),
])
def test_hot_store_errors_are_told_apart(message: str, kind: str) -> None:
    assert error_kind(message) == kind


def failing(errors: list[HotStoreError]):
    calls = []

    def action() -> None:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]

    return action, calls


def test_a_permanent_error_fails_the_batch_at_once() -> None:
    action, calls = failing([HotStoreError("(UNKNOWN_TABLE)", kind="permanent")])
    with pytest.raises(PermanentHotStoreError, match="can never succeed"):
        with_retry(action, "events_raw", lambda _: None, sleep=lambda _: None)
    assert len(calls) == 1


def test_a_transient_error_is_retried_a_bounded_number_of_times() -> None:
    action, calls = failing([HotStoreError("busy")] * 100)
    with pytest.raises(PermanentHotStoreError, match=f"failed {TRANSIENT_ATTEMPTS} times"):
        with_retry(action, "events_raw", lambda _: None, sleep=lambda _: None)
    assert len(calls) == TRANSIENT_ATTEMPTS


def test_an_unreachable_hot_node_is_waited_for() -> None:
    action, calls = failing([HotStoreError("down", kind="unreachable")] * 50 + [HotStoreError("busy")] * 3)
    slept: list[float] = []
    with_retry(action, "events_raw", lambda _: None, sleep=slept.append)
    assert len(calls) == 54 and max(slept) == 30.0


def test_a_bounded_wait_for_an_unreachable_hot_node_gives_up_after_its_time() -> None:
    action, calls = failing([HotStoreError("down", kind="unreachable")] * 50)
    slept: list[float] = []
    with pytest.raises(PermanentHotStoreError, match="unreachable for 61s"):
        with_retry(action, "stream_progress", lambda _: None, sleep=slept.append, wait_at_most=60)
    assert slept == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0] and len(calls) == 7


def test_a_bounded_wait_still_records_once_the_hot_node_is_back() -> None:
    action, calls = failing([HotStoreError("down", kind="unreachable")] * 4)
    slept: list[float] = []
    with_retry(action, "stream_progress", lambda _: None, sleep=slept.append, wait_at_most=120)
    assert len(calls) == 5 and sum(slept) == 15.0
