"""The stream job's stop logic: signals become a flag, and a stop is bounded whatever the JVM does."""

from __future__ import annotations

import os
import signal
import threading
import time

from stream.shutdown import stop_signals, stop_within


class FakeQuery:
    def __init__(self, on_stop=None, active: bool = True) -> None:
        self._on_stop = on_stop
        self._active = active
        self.stopped = False

    @property
    def isActive(self) -> bool:  # pyspark's name
        return self._active

    def stop(self) -> None:
        if self._on_stop is not None:
            self._on_stop()
        self.stopped = True


class FakeSpark:
    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_sigterm_and_ctrl_c_set_the_stop_flag_and_the_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with stop_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stop.is_set()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_normal_stop_stops_every_query_then_the_session() -> None:
    queries, spark, lines = [FakeQuery(), FakeQuery()], FakeSpark(), []
    assert stop_within(spark, queries, 5, lines.append)
    assert all(q.stopped for q in queries) and spark.stopped and lines == []


def test_a_jvm_that_is_already_gone_ends_the_stop_quietly() -> None:
    def refused() -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    queries, spark, lines = [FakeQuery(on_stop=refused), FakeQuery()], FakeSpark(), []
    assert stop_within(spark, queries, 5, lines.append)
    assert lines == ["the JVM has already stopped (it received the same signal)"]
    assert not queries[1].stopped and not spark.stopped


def test_a_query_error_is_reported_and_the_session_is_still_stopped() -> None:
    def fails() -> None:
        raise RuntimeError("StreamingQueryException: boom\nat some.java.Frame")

    spark, lines = FakeSpark(), []
    assert stop_within(spark, [FakeQuery(on_stop=fails)], 5, lines.append)
    assert lines == ["stopping query 1 of 1: RuntimeError: StreamingQueryException: boom"]
    assert spark.stopped


def test_a_stop_stuck_behind_a_micro_batch_gives_up_after_its_budget() -> None:
    stuck = threading.Event()
    started = time.monotonic()
    assert not stop_within(FakeSpark(), [FakeQuery(on_stop=stuck.wait)], 0.3, print)
    assert time.monotonic() - started < 2
    stuck.set()
