"""The stream's hot sink (``stream.job.HotTierWriter``) against a real hot node over Arrow Flight.

A micro-batch's events and minute rollups land exactly once (a replay with the same batch id changes nothing), and
the hours it wrote are marked after the inserts, in one call to the hot node (``commands``), with the same effect as
the two marks on their own: a built hour of session pieces is read raw from then on, and a day copy holding a written
hour is not read any more. The seal (``hour_closings``) is read while Spark computes the batch, and events older than
it are still dropped. Counts are compared with a truth computed here from the event dicts.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from common import day_rollups, session_pieces
from common.events import EVENT_ARROW_SCHEMA
from common.hot_store import FlightHotStore, HotStore, HotStoreError, run_commands
from serving.hot_node import start_hot_node
from stream.job import HotTierWriter
from tests.component.conftest import closed_port
from tests.component.seed import lay_hot

TENANT = "writer-co"
HOUR = datetime(2002, 3, 4, 5, tzinfo=UTC)  # hours no other test writes into
OTHER = HOUR + timedelta(hours=3)


def _events(rng: random.Random, hour: datetime, n: int) -> list[dict[str, Any]]:
    return [{"tenant": TENANT, "event": rng.choice(("page_view", "click")),
             "timestamp": hour + timedelta(seconds=k * 7),
             "event_id": uuid.UUID(int=rng.getrandbits(128)).hex, "user_id": f"u{rng.randint(1, 30)}",
             "page": "/a", "country": "DE", "device": "mobile", "properties": "", "received_at": hour,
             "revenue": 0.0} for k in range(n)]


class Counting:
    """The hot node's client, counting the calls each verb makes (the writer's round trips)."""

    def __init__(self, inner: FlightHotStore) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.answered: dict[str, int] = {}

    def _count(self, verb: str) -> None:
        self.calls[verb] = self.calls.get(verb, 0) + 1
        self.started.setdefault(verb, time.perf_counter())

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        self._count("query")
        answer = self.inner.query_arrow(sql, parameters)
        self.answered["query"] = self.answered.get("query", 0) + 1
        return answer

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self._count("command")
        self.inner.command(sql, parameters)

    def commands(self, statements) -> None:
        self._count("commands")
        self.inner.commands(statements)

    def insert_arrow(self, table: str, data: pa.Table, token: str | None = None) -> None:
        self._count("insert")
        self.inner.insert_arrow(table, data, token)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture()
def node(hot: HotStore) -> Iterator[tuple[str, str, str]]:
    token, reader, url = uuid.uuid4().hex, uuid.uuid4().hex, f"grpc://127.0.0.1:{closed_port()}"
    server = start_hot_node(hot, url, token, reader_token=reader)
    yield url, token, reader
    server.shutdown()
    hot.command("TRUNCATE TABLE hour_closings")
    for table in ("rollups_1h_by_day", "rollups_1h_by_day_shapes", "rollups_1h_by_day_marks", "session_pieces",
                  "funnel_pieces", "session_piece_hours"):
        hot.command(f"TRUNCATE TABLE {table}")


def _counts(hot: HotStore) -> tuple[int, int]:
    """The tenant's events in events_raw and in the minute rollups."""
    params = {"t": TENANT}
    raw = hot.query_arrow("SELECT count() AS n FROM events_raw WHERE tenant = {t:String}", params)
    rolled = hot.query_arrow("SELECT sum(events) AS n FROM rollups_1m WHERE tenant = {t:String}", params)
    return int(raw.to_pylist()[0]["n"]), int(rolled.to_pylist()[0]["n"] or 0)


def test_a_batch_lands_once_and_marks_its_hours_in_one_call(hot: HotStore, node: tuple[str, str, str]) -> None:
    url, token, _ = node
    rng = random.Random(17)
    laid = _events(rng, HOUR, 40) + _events(rng, OTHER, 10)
    lay_hot(hot, laid)  # the hours as an earlier batch wrote them, then built by the batch layer
    for hour in (HOUR, OTHER):
        session_pieces.build(hot, hour, 30)
    day_rollups.build(hot, HOUR.date())
    day = (datetime.combine(HOUR.date(), datetime.min.time()), datetime.combine(HOUR.date(), datetime.min.time())
           + timedelta(days=1))
    assert len(day_rollups.valid_builds(hot, *day)) == 1
    assert _counts(hot) == (50, 50)

    remote = Counting(FlightHotStore(url, timeout_s=30, token=token))
    log: list[str] = []
    writer = HotTierWriter(remote, "component-writer", log.append)  # type: ignore[arg-type]
    batch = _events(rng, HOUR + timedelta(minutes=30), 25)
    table = pa.Table.from_pylist(batch, schema=EVENT_ARROW_SCHEMA)
    try:
        writer.write(table, 7, None)
        assert remote.calls == {"insert": 2, "commands": 1}  # events, rollups, then both marks in one call
        assert _counts(hot) == (50 + len(batch), 50 + len(batch))
        # the written hour is read raw by session metrics, the other built hour still from its pieces
        built = session_pieces.built_hours(hot, HOUR, OTHER + timedelta(hours=1), 30).hours
        assert built == [OTHER.replace(tzinfo=None)]
        assert day_rollups.valid_builds(hot, *day) == []  # the day's copy lacks the new events: not read
        assert any("marks" in line for line in log)

        writer.write(table, 7, None)  # Spark replays the batch after a crash: same tokens, nothing twice
        assert _counts(hot) == (50 + len(batch), 50 + len(batch))
    finally:
        remote.close()


class _Batch:
    """Stands in for Spark's micro-batch DataFrame: ``select(...).toArrow()`` computes for ``seconds``, as Spark runs
    the batch's job there."""

    def __init__(self, table: pa.Table, seconds: float) -> None:
        self._table, self._seconds = table, seconds
        self.computing: tuple[float, float] | None = None

    def select(self, *names: str) -> _Batch:
        return self

    def toArrow(self) -> pa.Table:
        started = time.perf_counter()
        time.sleep(self._seconds)
        self.computing = (started, time.perf_counter())
        return self._table


def test_the_seal_is_read_while_spark_computes_and_older_events_are_dropped(
        hot: HotStore, node: tuple[str, str, str]) -> None:
    url, token, _ = node
    sealed_through = OTHER + timedelta(hours=1)
    hot.command("INSERT INTO hour_closings (closed_through, end_offsets_after) VALUES ({c:DateTime('UTC')}, '')",
                {"c": sealed_through.replace(tzinfo=None)})
    rng = random.Random(18)
    before = _counts(hot)
    old = _events(rng, OTHER + timedelta(minutes=10), 6)  # of a sealed hour: late, left to the batch layer
    new = _events(rng, sealed_through + timedelta(minutes=5), 9)
    remote = Counting(FlightHotStore(url, timeout_s=30, token=token))
    writer = HotTierWriter(remote, "component-seal", lambda _: None)  # type: ignore[arg-type]
    batch = _Batch(pa.Table.from_pylist(old + new, schema=EVENT_ARROW_SCHEMA), seconds=0.5)
    try:
        writer(batch, 3)  # type: ignore[arg-type]
        assert batch.computing is not None and remote.started["query"] < batch.computing[1]  # not after it
        assert writer.late_by_batch == {3: len(old)}
        assert _counts(hot) == (before[0] + len(new), before[1] + len(new))
        empty = _Batch(pa.Table.from_pylist([], schema=EVENT_ARROW_SCHEMA), seconds=0.0)
        writer(empty, 4)  # type: ignore[arg-type]
        assert remote.calls["insert"] == 2  # an empty batch writes nothing
        # ...and does not wait for its seal read, which goes on on its own thread: let it end before the node stops
        # (a call still in flight while this process's hot node shuts down is the likely cause of the one chDB fatal
        # error seen in this test's teardown, on a loaded box)
        deadline = time.monotonic() + 30
        while remote.answered.get("query", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert remote.answered.get("query", 0) == 2
    finally:
        remote.close()


def test_the_hot_node_runs_commands_in_order_stops_at_a_failure_and_needs_the_writer(
        hot: HotStore, node: tuple[str, str, str]) -> None:
    url, token, reader = node
    hot.command("CREATE TABLE IF NOT EXISTS commands_probe (n UInt8) ENGINE = MergeTree ORDER BY n")
    remote = FlightHotStore(url, timeout_s=30, token=token)
    try:
        run_commands(remote, [("INSERT INTO commands_probe VALUES ({n:UInt8})", {"n": 1}),
                              ("INSERT INTO commands_probe SELECT n + 1 FROM commands_probe WHERE n = 1", {})])
        seen = lambda: sorted(r["n"] for r in hot.query_arrow("SELECT n FROM commands_probe").to_pylist())  # noqa: E731
        assert seen() == [1, 2]  # the second statement saw the first's row
        with pytest.raises(HotStoreError):
            run_commands(remote, [("INSERT INTO commands_probe VALUES (5)", {}),
                                  ("INSERT INTO commands_probe_missing VALUES (6)", {}),
                                  ("INSERT INTO commands_probe VALUES (7)", {})])
        assert seen() == [1, 2, 5]
        with pytest.raises(HotStoreError) as refused:
            run_commands(FlightHotStore(url, timeout_s=30, token=reader),
                         [("INSERT INTO commands_probe VALUES (9)", {})])
        assert refused.value.permanent and seen() == [1, 2, 5]
        run_commands(hot, [("INSERT INTO commands_probe VALUES (3)", {})])  # straight on the store: the same
        assert seen() == [1, 2, 3, 5]
    finally:
        remote.close()
        hot.command("DROP TABLE IF EXISTS commands_probe")
