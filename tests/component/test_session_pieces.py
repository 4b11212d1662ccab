"""Session metrics from the session pieces of closed hours equal the truth, and stay equal when the hours change.

The hours before a boundary are built into pieces (``common.session_pieces``), the later ones stay raw, so sessions
cross from pieces to raw events; the clickstream of ``tests/analytics_clickstream.py`` brings sessions crossing
hours and midnight, a client session id and a chain cut at 24 hours (counted from its raw events). Then an hour is
restated with a late event that joins two sessions (``batch.restate.restate_hour`` builds its pieces again), and a
retention purge removes a day of the tenant's events (``storage_tiers.tiers.purge``: their pieces go too). Each answer
is compared with ``tests/analytics_truth.py`` over the events the hot tier holds at that moment, and with the
answer from the raw events alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

import tests.analytics_truth as truth
from batch.restate import restate_hour
from common import session_pieces
from common.events import EVENT_ARROW_SCHEMA
from common.hot_store import HotStore
from common.rollups import minute_rollups
from common.settings import Settings
from serving.analytics import definitions as defs
from serving.analytics.engine import AnalyticsEngine
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.policy import load_policy
from storage_tiers.tiers.purge import Purger
from tests.analytics_clickstream import FUNNEL, Clickstream, clickstream, lay_hot

TENANT = "pieces-co"
KEYS = ("sessions", "avg_session_duration", "pages_per_session", "bounce_rate")


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


class Recording:
    """The hot store, keeping the SQL it ran (to see which path answered)."""

    def __init__(self, store: HotStore) -> None:
        self.store, self.sql = store, []

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        self.sql.append(sql)
        return self.store.query_arrow(sql, parameters)


@pytest.fixture(scope="module")
def laid(hot: HotStore) -> Iterator[dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)
    stream = clickstream(TENANT, "q", now - timedelta(days=6, minutes=-17), 5, seed=51)
    boundary = _hour(now - timedelta(days=3, hours=12))
    # a session across the boundary: its first events in a built hour, the rest raw
    for minutes, event in ((-25, "page_view"), (-5, "click"), (10, "page_view"), (30, "page_view")):
        stream.add("edge", event, boundary + timedelta(minutes=minutes), page=f"/e{minutes}")
    lay_hot(hot, stream.events)
    built = sorted({_hour(e["timestamp"]) for e in stream.events if e["timestamp"] < boundary})
    for hour in built:
        session_pieces.build(hot, hour, 30)
    yield {"now": now, "stream": stream, "boundary": boundary, "built": built,
           "range": (now - timedelta(days=5), now - timedelta(days=2))}
    for table in ("session_pieces", "funnel_pieces", "session_piece_hours"):  # other modules share the hot tier
        hot.command(f"TRUNCATE TABLE {table}")              # and lay events into these hours later: back to raw for all


def _check(settings: Settings, hot: HotStore, laid: dict[str, Any], events: list[dict[str, Any]],
           span: tuple[datetime, datetime] | None = None) -> list[str]:
    """Every grouping from the pieces equals the truth and the raw events' answer; the SQL the pieces ran."""
    start, end = span or laid["range"]
    recording = Recording(hot)
    for by in (None, "entry_page", "exit_page"):
        spec = defs.sessions_spec({"tier": "hot", "by": by, "non_interactive": ["scroll"]}, start, end)
        answer = AnalyticsEngine(recording, settings).sessions(TENANT, spec, laid["now"])  # type: ignore[arg-type]
        raw = AnalyticsEngine(hot, settings, use_session_pieces=False).sessions(TENANT, spec, laid["now"])
        assert answer.pieces and not raw.pieces and answer.sources == ["hot:events_raw"]
        expected = truth.session_metrics(events, start, end, non_interactive=frozenset({"scroll"}), by=by)
        assert sum(m["sessions"] for m in expected.values()) > 50
        if by is None:
            assert {k: answer.body["totals"][k] for k in KEYS} == {k: expected[None][k] for k in KEYS}
        else:
            assert {r[by]: {k: r[k] for k in KEYS} for r in answer.body["rows"]} == {
                g: {k: m[k] for k in KEYS} for g, m in expected.items()}
        assert answer.body == raw.body
    for case in FUNNELS:  # the funnel pieces are built, forgotten and purged with the session pieces
        spec = defs.funnel_spec({**case, "tier": "hot"}, start, end)
        answer = AnalyticsEngine(recording, settings).funnel(TENANT, spec, laid["now"])  # type: ignore[arg-type]
        _funnel_equals_the_truth(answer, events, case, start, end)
    assert any("FROM funnel_pieces" in sql for sql in recording.sql)
    return recording.sql


FUNNELS: list[dict[str, Any]] = [
    {"steps": FUNNEL, "window": timedelta(days=1), "breakdown": "country"},
    {"steps": [{"event": "page_view"}, {"event": "page_view"}, {"event": "add_to_cart"}], "window": timedelta(hours=1),
     "mode": "strict"},
]


def _funnel_equals_the_truth(answer: Any, events: list[dict[str, Any]], case: dict[str, Any], start: datetime,
                             end: datetime) -> None:
    options = {k: case[k] for k in ("window", "mode") if k in case}
    expected = truth.funnel(events, case["steps"], start, end, breakdown=case.get("breakdown"), **options)
    assert expected["steps"][0]["count"] > 0
    rows = [(r["count"], r["time_to_convert_mean"], r["time_to_convert_median"]) for r in answer.body["steps"]]
    assert rows == [(r["count"], r["time_to_convert_mean"], r["time_to_convert_median"]) for r in expected["steps"]]
    if case.get("breakdown"):
        assert {r["value"]: [s["count"] for s in r["steps"]] for r in answer.body["breakdown"]} == {
            v: [s["count"] for s in steps] for v, steps in expected["breakdown"].items()}
    for k in range(1, len(case["steps"])):
        assert sorted({c.user_id for c in answer.conversions if c.level == k}) == expected["dropped"][k]


def test_pieces_and_raw_hours_answer_as_the_truth(settings: Settings, hot: HotStore, laid: dict[str, Any]):
    stream: Clickstream = laid["stream"]
    ran = _check(settings, hot, laid, stream.events)
    assert any("FROM session_pieces" in sql for sql in ran)
    # the chain cut at 24 hours lies in built hours: its user was counted from the raw events
    assert any("long_users" in sql for sql in ran)
    marathon = [e for e in stream.events if e["user_id"] == "qmarathon"]
    assert marathon[-1]["timestamp"] < laid["boundary"] and len(truth.sessions_of(marathon)) == 2


def test_a_restated_hour_resessionizes_its_late_events(settings: Settings, hot: HotStore, laid: dict[str, Any]):
    stream: Clickstream = laid["stream"]
    start, end = laid["range"]
    # a built hour of the range with the fewest other tenants' rollups (the hot tier is shared with other modules;
    # the restatement recomputes every tenant's rollups of the hour from its events, which changes nothing for
    # rollups written from the same events)
    hour = min((h for h in laid["built"] if start + timedelta(hours=2) < h < laid["boundary"]),
               key=lambda h: (_others(hot, h), h))
    # two sessions of one user 40 minutes apart; the late event between them joins them into one
    stream.add("late", "page_view", hour + timedelta(minutes=5), page="/a")
    stream.add("late", "page_view", hour + timedelta(minutes=45), page="/b")
    lay_hot(hot, stream.events[-2:])
    session_pieces.build(hot, hour, 30)  # the hour as closed, with the two sessions
    before = _check(settings, hot, laid, stream.events)
    assert before
    stream.add("late", "click", hour + timedelta(minutes=25), page="/a")
    live = hot.query_arrow("SELECT * EXCEPT (received_at), received_at FROM events_raw "
                           "WHERE toStartOfHour(toDateTime(timestamp)) = {h:DateTime('UTC')}",
                           {"h": hour.replace(tzinfo=None)})
    staged = pa.concat_tables([live.select(EVENT_ARROW_SCHEMA.names).cast(EVENT_ARROW_SCHEMA),
                               pa.Table.from_pylist(stream.events[-1:], schema=EVENT_ARROW_SCHEMA)])
    restate_hour(hot, hour, minute_rollups(staged), staged, session_gap_minutes=30)
    assert hour.replace(tzinfo=None) in session_pieces.built_hours(hot, hour, hour + timedelta(hours=1), 30).hours
    _check(settings, hot, laid, stream.events)
    late = [e for e in stream.events if e["user_id"] == "qlate"]
    assert len(truth.sessions_of(late)) == 1


class RacedByARestatement(Recording):
    """The hot store, where a restatement forgets ``hour`` (its first step) right before the first read of the
    pieces (of ``table``): the question saw the hour built, and its pieces are gone when it reads them."""

    def __init__(self, store: HotStore, hour: datetime, table: str = "session_pieces") -> None:
        super().__init__(store)
        self.hour, self.table, self.raced = hour, table, False

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        if f"FROM {self.table}" in sql and not self.raced:
            self.raced = True
            session_pieces.forget(self.store, self.hour)
        return super().query_arrow(sql, parameters)


def test_a_question_raced_by_a_restatement_misses_no_hour(settings: Settings, hot: HotStore, laid: dict[str, Any]):
    start, end = laid["range"]
    hour = next(h for h in laid["built"] if start + timedelta(hours=3) < h)
    held = hot.query_arrow("SELECT count() AS n FROM session_pieces "
                           "WHERE hour = {h:DateTime('UTC')} AND tenant = {t:String}",
                           {"h": hour.replace(tzinfo=None), "t": TENANT}).to_pylist()[0]["n"]
    assert held > 0  # the hour has sessions of the tenant: missing it would change the answer
    raced = RacedByARestatement(hot, hour)
    spec = defs.sessions_spec({"tier": "hot", "non_interactive": ["scroll"]}, start, end)
    try:
        answer = AnalyticsEngine(raced, settings).sessions(TENANT, spec, laid["now"])  # type: ignore[arg-type]
        assert raced.raced
        expected = truth.session_metrics(laid["stream"].events, start, end, non_interactive=frozenset({"scroll"}))
        assert {k: answer.body["totals"][k] for k in KEYS} == {k: expected[None][k] for k in KEYS}
    finally:
        session_pieces.build(hot, hour, 30)  # as the restatement would: the hour built again


def test_a_funnel_raced_by_a_restatement_misses_no_hour(settings: Settings, hot: HotStore, laid: dict[str, Any]):
    """As above for the funnel pieces: the hour's step events must be read, from its pieces or raw."""
    start, end = laid["range"]
    case = FUNNELS[0]
    spec = defs.funnel_spec({**case, "tier": "hot"}, start, end)
    # the built hour of the range with the most events of the tenant; leaving it out must change the answer (or
    # this test would prove nothing)
    counts: dict[datetime, int] = {}
    for e in laid["stream"].events:
        if start <= e["timestamp"] < end and _hour(e["timestamp"]) in laid["built"]:
            counts[_hour(e["timestamp"])] = counts.get(_hour(e["timestamp"]), 0) + 1
    hour = max(counts, key=lambda h: (counts[h], h))
    assert _funnel_without(hot, settings, laid, spec, hour) != AnalyticsEngine(hot, settings).funnel(
        TENANT, spec, laid["now"]).body
    raced = RacedByARestatement(hot, hour, "funnel_pieces")
    try:
        answer = AnalyticsEngine(raced, settings).funnel(TENANT, spec, laid["now"])  # type: ignore[arg-type]
        assert raced.raced
        _funnel_equals_the_truth(answer, laid["stream"].events, case, start, end)
    finally:
        session_pieces.build(hot, hour, 30)  # as the restatement would: the hour built again


def _funnel_without(hot: HotStore, settings: Settings, laid: dict[str, Any], spec: defs.FunnelSpec,
                    hour: datetime) -> dict[str, Any]:
    """The funnel's answer with ``hour``'s funnel pieces missing while it stays marked built (what a question would
    answer without the marks' check)."""
    params = {"h": hour.replace(tzinfo=None)}
    hot.command("ALTER TABLE funnel_pieces DELETE WHERE hour = {h:DateTime('UTC')} SETTINGS mutations_sync = 2",
                params)
    try:
        return AnalyticsEngine(hot, settings).funnel(TENANT, spec, laid["now"]).body
    finally:
        session_pieces.build(hot, hour, 30)


def _others(hot: HotStore, hour: datetime) -> int:
    """Rows of other tenants in the hour's rollups."""
    params = {"h": hour.replace(tzinfo=None), "t": TENANT}
    return sum(hot.query_arrow(f"SELECT count() AS n FROM {table} WHERE {column} = {{h:DateTime('UTC')}} "
                               "AND tenant != {t:String}", params).to_pylist()[0]["n"]
               for table, column in (("rollups_1m", "toStartOfHour(minute)"), ("rollups_1h", "hour")))


def test_a_purge_takes_the_pieces_with_the_events(settings: Settings, hot: HotStore, laid: dict[str, Any]):
    stream: Clickstream = laid["stream"]
    now = laid["now"]
    # a whole day before every other module's events (a purge deletes whole hourly partitions there: the hot tier's
    # row deletes of shared hours are not what this checks), with sessions crossing its hours
    first_day = datetime.combine((now - timedelta(days=6)).date(), datetime.min.time(), UTC)
    day = next(d for d in (first_day - timedelta(days=k) for k in range(2, 60)) if not _others_in(hot, d))
    for k in range(12):
        stream.add("old1", "page_view" if k % 4 else "click", day + timedelta(hours=9, minutes=20 * k), page=f"/o{k}")
    for at in (timedelta(hours=15, minutes=50), timedelta(hours=16, minutes=10)):
        stream.add("old2", "page_view", day + at, page="/o")
    old = [e for e in stream.events if e["timestamp"] < first_day]
    lay_hot(hot, old)
    for hour in sorted({_hour(e["timestamp"]) for e in old}):
        session_pieces.build(hot, hour, 30)
    span = (day, now - timedelta(days=2))
    _check(settings, hot, laid, stream.events, span)
    policy = load_policy(settings)
    policy = dataclasses.replace(policy, tenant_retention={**policy.tenant_retention, TENANT: timedelta(days=6)})
    report = Purger(settings, policy, AuditLog(settings), now, store=hot).run(confirm_large=True)
    assert any(i.tier == "hot" and i.tenants == [TENANT] and i.whole for i in report.items)
    for table in session_pieces.PIECE_TABLES:
        left = hot.query_arrow(f"SELECT count() AS n FROM {table} WHERE tenant = {{t:String}} "
                               "AND hour < {c:DateTime('UTC')}", {"t": TENANT, "c": first_day.replace(tzinfo=None)})
        assert left.to_pylist()[0]["n"] == 0
    assert session_pieces.built_hours(hot, day, first_day, 30).hours == []
    kept = [e for e in stream.events if e["timestamp"] >= first_day]
    assert len(kept) == len(stream.events) - len(old)
    _check(settings, hot, laid, kept, span)


def _others_in(hot: HotStore, day: datetime) -> bool:
    params = {"a": day.replace(tzinfo=None), "b": (day + timedelta(days=1)).replace(tzinfo=None), "t": TENANT}
    return any(hot.query_arrow(f"SELECT count() AS n FROM {table} WHERE {column} >= {{a:DateTime('UTC')}} "
                               f"AND {column} < {{b:DateTime('UTC')}} AND tenant != {{t:String}}",
                               params).to_pylist()[0]["n"]
               for table, column in (("events_raw", "timestamp"), ("rollups_1m", "minute"), ("rollups_1h", "hour")))


def test_events_the_stream_writes_into_a_built_hour_make_it_read_raw(hot: HotStore) -> None:
    hour = datetime(2001, 2, 3, 4, tzinfo=UTC)  # hours no other test writes into
    later = hour + timedelta(hours=1)
    for built in (hour, later):
        session_pieces.build(hot, built, 30)
    naive = [h.replace(tzinfo=None) for h in (hour, later)]
    assert session_pieces.built_hours(hot, hour, later + timedelta(hours=1), 30).hours == naive
    never_built = hour + timedelta(hours=5)
    session_pieces.written(hot, [hour + timedelta(minutes=59), never_built])  # what the stream's writer calls
    assert session_pieces.built_hours(hot, hour, never_built + timedelta(hours=1), 30).hours == naive[1:]
    marks = hot.query_arrow("SELECT count() AS n FROM session_piece_hours WHERE hour = {h:DateTime('UTC')}",
                            {"h": never_built.replace(tzinfo=None)}).to_pylist()[0]["n"]
    assert marks == 0  # an hour never built gets no mark


def _marked(hot: HotStore, hours: list[datetime]) -> dict[datetime, int]:
    rows = hot.query_arrow("SELECT toUnixTimestamp(hour) AS epoch, count() AS n FROM session_piece_hours "
                           "WHERE hour IN {h:Array(DateTime('UTC'))} GROUP BY hour",
                           {"h": [h.replace(tzinfo=None) for h in hours]}).to_pylist()
    return {datetime.fromtimestamp(r["epoch"], UTC): r["n"] for r in rows}


def test_the_marks_of_forgotten_hours_go_after_the_grace_period(hot: HotStore) -> None:
    """The marks' retention: an hour last marked not built (moved out of the hot tier, written after its build) loses
    its marks once the grace period is over, and is read raw as before; built hours keep theirs."""
    hours = [datetime(2001, 3, 4, h, tzinfo=UTC) for h in (1, 2, 3)]  # hours no other test writes into
    for hour in hours:
        session_pieces.build(hot, hour, 30)
    session_pieces.forget(hot, hours[0])  # the tier mover dropped it
    session_pieces.written(hot, [hours[1]])  # the stream wrote into it after its build
    span = (hours[0], hours[-1] + timedelta(hours=1))
    assert session_pieces.built_hours(hot, *span, 30).hours == [hours[2].replace(tzinfo=None)]
    assert session_pieces.trim_marks(hot) == [], "within the grace period the marks stay"
    assert set(_marked(hot, hours)) == set(hours)
    trimmed = session_pieces.trim_marks(hot, grace=timedelta(0))
    assert {h for h in trimmed if h.date() == hours[0].date()} == {h.replace(tzinfo=None) for h in hours[:2]}
    assert set(_marked(hot, hours)) == {hours[2]}, "only the built hour keeps its marks"
    assert session_pieces.built_hours(hot, *span, 30).hours == [hours[2].replace(tzinfo=None)], "read as before"
    session_pieces.build(hot, hours[0], 30)  # restated again: marked anew, built
    assert session_pieces.built_hours(hot, *span, 30).hours == [h.replace(tzinfo=None) for h in (hours[0], hours[2])]
