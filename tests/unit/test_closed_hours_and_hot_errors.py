"""When an hour may be restated (``batch.hour_state.judge_hour``) and how the stream treats hot-store errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from batch.hour_state import judge_hour, offsets_behind, parse_offsets
from common.hot_store import HotStoreError, error_kind
from stream.job import TRANSIENT_ATTEMPTS, PermanentHotStoreError, with_retry

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
