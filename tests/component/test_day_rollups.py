"""Dashboard answers from the day copies of rollups_1h equal rollups_1h's alone and the truth from the raw events.

Two tenants' events over nine days, three to four weeks back (no other module writes there, so a restatement and a
purge touch only them): some days built whole (``common.day_rollups``), one built only up to 14:00 (its later hours,
like the open hours of today, read from rollups_1h), one never built (a fresh install's old days). Each widget (time
series, breakdown, top-N, day series of unique users) over ranges that mix them, with partial days and hours at both
ends, must answer as the engine without the copies and as the truth computed here from the event dicts (unique users:
equal to rollups_1h's answer, whose ``uniq`` is itself approximate). Then the hours change under the copies: the stream
writes into a copied hour, a restatement adds late events to a closed hour (also while a question is reading), a purge
removes one tenant's oldest days. Every widget is asked in the shape the engine should pick from the copies' shaped
rows (``rollups_1h_by_day_shapes``: no dimension, the event, one dimension, whole days as day rows), and the test
checks the engine read that one (its ``copy_reads``), and the full rows when a filter and a breakdown name two
dimensions. The valid builds a process keeps between questions are read again after any write of the marks (also
when a restatement races a question that used them), and migration 020's move of the shaped rows changes no answer.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from batch.restate import restate_hour
from common import day_rollups
from common.events import EVENT_ARROW_SCHEMA
from common.hot_schema import load_migrations
from common.hot_store import FlightHotStore, HotStore, is_remote, run_commands, write_count
from common.rollups import minute_rollups
from common.settings import Settings
from serving.hot_node import start_hot_node
from serving.query.engine import QueryEngine
from serving.query.spec import SpecInput, build_spec
from serving.tenancy.query_slots import TenantFairStore, TenantQuerySlots
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.policy import load_policy
from storage_tiers.tiers.purge import Purger
from tests.component.conftest import closed_port
from tests.component.seed import lay_hot

TENANTS = ("days-co", "days-other")
GONE = "days-gone"  # a tenant with a short retention, alone in a few hours of a built day before the others' days
EVENTS = ("page_view", "page_view", "click", "purchase", "signup")
COUNTRIES = ("US", "DE", "FR", "JP", "BR")
PAGES = tuple(f"/p{i}" for i in range(12))


def _event(rng: random.Random, tenant: str, at: datetime) -> dict[str, Any]:
    name = rng.choice(EVENTS)
    return {"tenant": tenant, "event": name, "timestamp": at, "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "user_id": f"u{rng.randint(1, 400)}", "page": rng.choice(PAGES), "country": rng.choice(COUNTRIES),
            "device": rng.choice(("mobile", "desktop")), "properties": "", "received_at": at,
            "revenue": rng.randint(1, 99) / 4 if name == "purchase" else 0.0}


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


@pytest.fixture(scope="module")
def laid(hot: HotStore) -> Iterator[dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)
    first = (now - timedelta(days=30)).date()
    days = [first + timedelta(days=k) for k in range(9)]
    rng = random.Random(16)
    events = [_event(rng, tenant, _midnight(days[0]) + timedelta(seconds=rng.randint(0, 9 * 86_400 - 1)))
              for tenant in TENANTS for _ in range(4_000)]
    gone = days[0] - timedelta(days=1)  # (hours of its own: the hot tables drop them whole, no row deletes)
    events += [_event(rng, GONE, _midnight(gone) + timedelta(hours=h, minutes=m))
               for h in (2, 9, 17) for m in range(30)]
    for day in [gone, *days]:  # an insert touches at most 100 hourly partitions
        lay_hot(hot, [e for e in events if e["timestamp"].date() == day])
    day_rollups.build(hot, gone)
    for day in days[1:7]:  # days[0] never built; days[7] up to 14:00; days[8] (the newest) not yet
        day_rollups.build(hot, day)
    day_rollups.build(hot, days[7], _midnight(days[7]) + timedelta(hours=14))
    yield {"now": now, "days": days, "events": events, "gone": gone}
    # other modules lay events into other hours without a build, and read session pieces: the restatements here built
    # some (batch.restate); leave no copy and no pieces behind
    for table in ("rollups_1h_by_day", "rollups_1h_by_day_shapes", "rollups_1h_by_day_marks", "session_pieces",
                  "funnel_pieces", "session_piece_hours"):
        hot.command(f"TRUNCATE TABLE {table}")


def _specs(start: datetime, end: datetime) -> dict[str, SpecInput]:
    by = {"order_by": [{"field": "events", "direction": "desc"}], "limit": 100}
    return {
        "timeseries": SpecInput(metrics=["events", "revenue"], start=start, end=end, granularity="hour"),
        "breakdown": SpecInput(metrics=["events"], start=start, end=end, dimensions=["country"], **by),
        "topn": SpecInput(metrics=["page_views"], start=start, end=end, dimensions=["page"], limit=5,
                          order_by=[{"field": "page_views", "direction": "desc"},
                                    {"field": "page", "direction": "asc"}]),
        "filtered": SpecInput(metrics=["events"], start=start, end=end, dimensions=["device"],
                              filters=[{"field": "country", "op": "in", "values": ["DE", "FR"]}], **by),
        "users": SpecInput(metrics=["unique_users", "events"], start=start, end=end, granularity="day"),
        "by_device": SpecInput(metrics=["events"], start=start, end=end, dimensions=["device"], **by),
        "by_event": SpecInput(metrics=["events"], start=start, end=end, dimensions=["event"], **by),
        "total": SpecInput(metrics=["events", "revenue"], start=start, end=end),
        "users_by_country": SpecInput(metrics=["unique_users"], start=start, end=end, dimensions=["country"]),
    }


# the shape of the copies each widget must be answered from (day rows too where it holds whole days: those without
# hour buckets, and the day series)
SHAPE = {"timeseries": "total", "breakdown": "country", "topn": "page", "filtered": day_rollups.FULL, "users": "total",
         "by_device": "device", "by_event": "event", "total": "total", "users_by_country": "country"}
UNIQUE = ("users", "users_by_country")  # unique users: equal to rollups_1h's answer (its uniq is approximate)


def _truth(events: list[dict[str, Any]], tenant: str, name: str, start: datetime, end: datetime) -> list[list]:
    """The widget's rows from the events: rollup rows start on their hour, so a range starting inside an hour reads the
    whole hour (the spec's start floored), and an hour starting before the end is read whole."""
    lo = _hour(start)
    mine = [e for e in events if e["tenant"] == tenant and lo <= _hour(e["timestamp"]) < end]
    if name == "timeseries":
        per: dict[int, list] = {}
        for e in mine:
            row = per.setdefault(int(_hour(e["timestamp"]).timestamp()), [0, 0.0])
            row[0] += 1
            row[1] += e["revenue"]
        return [[b, n, r] for b, (n, r) in sorted(per.items())]
    if name == "total":
        return [[len(mine), sum(e["revenue"] for e in mine)]] if mine else []
    if name in ("breakdown", "filtered", "by_device", "by_event"):
        field = {"breakdown": "country", "filtered": "device", "by_device": "device", "by_event": "event"}[name]
        keep = [e for e in mine if name != "filtered" or e["country"] in ("DE", "FR")]
        counts = Counter(e[field] for e in keep)
        return [[k, n] for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    if name == "topn":
        counts = Counter(e["page"] for e in mine if e["event"] == "page_view")
        return [[k, n] for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]]
    raise AssertionError(name)


def _answers(hot: HotStore, laid: dict[str, Any], start: datetime, end: datetime, tenant: str = TENANTS[0],
             events: list[dict[str, Any]] | None = None) -> dict[str, list]:
    """Each widget with the copies, from the shape it should read; every one equal to rollups_1h's alone, to the
    copies' full rows and (but unique users) to the truth."""
    now = laid["now"]
    local = not is_remote(hot)  # the hot node's read-only sessions take no max_execution_time
    copies, alone = QueryEngine(hot, server_timeout=local), QueryEngine(hot, day_copies=False, server_timeout=local)
    full = QueryEngine(hot, day_shapes=False, server_timeout=local)
    copied = _copied(hot, start, end) > 0
    out = {}
    for name, raw in _specs(start, end).items():
        spec = build_spec(raw, now=now)
        copies.copy_reads.clear()
        answer = copies.run(tenant, spec, now)
        assert copies.copy_reads == ({SHAPE[name]: 1} if copied else {}), name
        assert answer.rows == alone.run(tenant, spec, now).rows, name
        assert answer.rows == full.run(tenant, spec, now).rows, name
        assert answer.sources == ["hot:rollups_1h"]
        if name not in UNIQUE:
            assert answer.rows == _truth(laid["events"] if events is None else events, tenant, name, spec.start,
                                         spec.end), name
        out[name] = answer.rows
    assert out["timeseries"], "the range holds events"
    return out


def _copied(hot: HotStore, start: datetime, end: datetime) -> int:
    """How many days' builds a question over the range reads."""
    found = day_rollups.read(hot, start, end)
    return 0 if found is None else len(found.builds)


def _day_rows(hot: HotStore, start: datetime, end: datetime) -> int:
    """How many days a question with day buckets (or none) over the range reads as day rows."""
    found = day_rollups.read(hot, start, end, "total", day_rows=True)
    return 0 if found is None else found.day_rows


def test_ranges_mixing_built_partial_and_unbuilt_days_answer_as_the_truth(hot: HotStore, laid: dict[str, Any]):
    days = laid["days"]
    whole = (_midnight(days[0]) + timedelta(hours=5, minutes=17), _midnight(days[8]) + timedelta(hours=20, minutes=3))
    assert _copied(hot, *whole) == 7  # days[1..7]; days[0] and days[8] from rollups_1h, days[7] after 14:00 too
    assert _day_rows(hot, *whole) == 7  # days[1..6] whole, days[7] copied up to 14:00: the day row of those hours
    for tenant in TENANTS:
        _answers(hot, laid, *whole, tenant=tenant)
    inside = (_midnight(days[3]) + timedelta(hours=9, minutes=40), _midnight(days[5]) + timedelta(hours=2))
    assert _copied(hot, *inside) == 3
    assert _day_rows(hot, *inside) == 1  # days[4]; days[3] and days[5] partly in the range: their hour rows
    _answers(hot, laid, *inside)
    across_the_reach = (_midnight(days[7]) + timedelta(hours=11, minutes=30), _midnight(days[8]) + timedelta(hours=1))
    assert _copied(hot, *across_the_reach) == 1
    assert _day_rows(hot, *across_the_reach) == 0  # from 11:00 on: days[7]'s hour rows
    _answers(hot, laid, *across_the_reach)
    unbuilt = (_midnight(days[0]) + timedelta(hours=3), _midnight(days[1]))
    assert _copied(hot, *unbuilt) == 0
    _answers(hot, laid, *unbuilt)


def test_events_the_stream_writes_into_a_copied_hour_are_counted(hot: HotStore, laid: dict[str, Any]):
    days = laid["days"]
    at = _midnight(days[4]) + timedelta(hours=7, minutes=12)
    rng = random.Random(4)
    late = [_event(rng, TENANTS[0], at + timedelta(seconds=k)) for k in range(25)]
    span = (_midnight(days[3]), _midnight(days[6]))
    before = _copied(hot, *span)
    lay_hot(hot, late)  # as the stream writes (its writer records the change after the insert)
    laid["events"].extend(late)
    assert _copied(hot, *span) == before - 1  # the written day from rollups_1h now
    _answers(hot, laid, *span)
    day_rollups.build(hot, days[4])  # the batch layer builds it again
    assert _copied(hot, *span) == before
    _answers(hot, laid, *span)
    untouched = (_midnight(days[7]) + timedelta(hours=15), _midnight(days[7]) + timedelta(hours=16))
    beyond = [_event(rng, TENANTS[0], untouched[0] + timedelta(minutes=3))]
    lay_hot(hot, beyond)  # past the day's reach: its build stays valid
    laid["events"].extend(beyond)
    assert day_rollups.valid_builds(hot, _midnight(days[7]), _midnight(days[8]))[0].through == untouched[0].replace(
        tzinfo=None) - timedelta(hours=1)


def _restate(hot: HotStore, hour: datetime, late: list[dict[str, Any]]) -> None:
    """Restate ``hour`` as the batch layer would: the live events of every tenant of the hour, plus ``late`` ones."""
    live = hot.query_arrow("SELECT * EXCEPT (received_at), received_at FROM events_raw "
                           "WHERE toStartOfHour(toDateTime(timestamp)) = {h:DateTime('UTC')}",
                           {"h": hour.replace(tzinfo=None)})
    staged = pa.concat_tables([live.select(EVENT_ARROW_SCHEMA.names).cast(EVENT_ARROW_SCHEMA),
                               pa.Table.from_pylist(late, schema=EVENT_ARROW_SCHEMA)])
    restate_hour(hot, hour, minute_rollups(staged), staged, session_gap_minutes=30)


def test_a_restated_closed_hour_is_copied_again(hot: HotStore, laid: dict[str, Any]):
    days = laid["days"]
    hour = _midnight(days[2]) + timedelta(hours=13)
    rng = random.Random(2)
    late = [_event(rng, TENANTS[0], hour + timedelta(minutes=k)) for k in range(30)]
    span = (_midnight(days[1]) + timedelta(hours=20), _midnight(days[3]) + timedelta(hours=4))
    builds = {b.day: b.build for b in day_rollups.valid_builds(hot, *span)}
    _restate(hot, hour, late)
    laid["events"].extend(late)
    rebuilt = {b.day: b for b in day_rollups.valid_builds(hot, *span)}
    assert rebuilt[days[2]].build != builds[days[2]] and rebuilt[days[2]].through == _midnight(days[3]).replace(
        tzinfo=None), "the whole day copied again, as far as it reached"
    assert rebuilt[days[1]].build == builds[days[1]]
    _answers(hot, laid, *span)
    # an hour of a day never built: restating it copies the day up to it (the batch layer closes hours in order)
    fresh = _midnight(days[8]) + timedelta(hours=6)
    _restate(hot, fresh, [])
    assert [(b.day, b.through) for b in day_rollups.valid_builds(hot, fresh, fresh + timedelta(hours=1))] == [
        (days[8], fresh.replace(tzinfo=None) + timedelta(hours=1))]
    _answers(hot, laid, _midnight(days[7]), _midnight(days[8]) + timedelta(hours=12))


class RacedByARestatement:
    """The hot store, where a restatement of ``hour`` (with ``late`` events) runs right before the first question
    that reads the day copies: the question chose its builds before the restatement replaced the day's."""

    def __init__(self, store: HotStore, hour: datetime, late: list[dict[str, Any]]) -> None:
        self.store, self.hour, self.late, self.raced = store, hour, late, False

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        reads_copies = "FROM rollups_1h_by_day_shapes" in sql or "FROM rollups_1h_by_day WHERE" in sql
        if reads_copies and not self.raced:
            self.raced = True
            _restate(self.store, self.hour, self.late)
        return self.store.query_arrow(sql, parameters)


def test_a_question_raced_by_a_restatement_reads_whole_days(hot: HotStore, laid: dict[str, Any]):
    days = laid["days"]
    hour = _midnight(days[5]) + timedelta(hours=10)
    rng = random.Random(5)
    late = [_event(rng, TENANTS[0], hour + timedelta(minutes=2 * k)) for k in range(20)]
    start, end = _midnight(days[4]), _midnight(days[7])
    spec = build_spec(_specs(start, end)["timeseries"], now=laid["now"])
    raced = RacedByARestatement(hot, hour, late)
    answer = QueryEngine(raced).run(TENANTS[0], spec, laid["now"])  # type: ignore[arg-type]
    assert raced.raced
    # the builds it chose are still there (dropped only after the grace period): the answer before the restatement
    assert answer.rows == _truth(laid["events"], TENANTS[0], "timeseries", spec.start, spec.end)
    laid["events"].extend(late)
    after = _answers(hot, laid, start, end)["timeseries"]
    assert after != answer.rows and all(a[1] >= b[1] for a, b in zip(after, answer.rows, strict=True)), \
        "the next answer holds the late events; no hour went backwards"


class RacedWithKeptBuilds(RacedByARestatement):
    """The same race where the question's builds come from the per-process look-up (it counts the marks' writes as
    the embedded store does): the look-up answers from what it kept, then the restatement runs before the read."""

    @property
    def dsn(self) -> str:
        return self.store.dsn  # type: ignore[attr-defined]

    def write_count(self, table: str) -> int | None:
        return self.store.write_count(table)  # type: ignore[attr-defined]


def test_kept_builds_are_read_again_after_any_write_of_the_marks(hot: HotStore, laid: dict[str, Any]):
    """The valid builds are kept per process while the marks do not change: a question racing a restatement still
    reads whole builds (those it chose stay for the grace period), and the next one reads the marks again and answers
    with the restated hour."""
    days = laid["days"]
    hour = _midnight(days[4]) + timedelta(hours=16)
    rng = random.Random(9)
    late = [_event(rng, TENANTS[0], hour + timedelta(minutes=3 * k)) for k in range(15)]
    start, end = _midnight(days[3]) + timedelta(hours=2), _midnight(days[6])
    spec = build_spec(_specs(start, end)["timeseries"], now=laid["now"])
    truth = _truth(laid["events"], TENANTS[0], "timeseries", spec.start, spec.end)
    reads = day_rollups.VALID_BUILDS.reads
    seen = Counter(reads)
    assert QueryEngine(hot).run(TENANTS[0], spec, laid["now"]).rows == truth
    assert QueryEngine(hot).run(TENANTS[0], spec, laid["now"]).rows == truth
    assert reads - seen == Counter(read=1, kept=1), "read once, then kept while nothing wrote the marks"
    chosen = {b.day: b.build for b in day_rollups.valid_builds(hot, start, end)}
    raced = RacedWithKeptBuilds(hot, hour, late)
    seen = Counter(reads)
    answer = QueryEngine(raced).run(TENANTS[0], spec, laid["now"])  # type: ignore[arg-type]
    assert raced.raced and reads - seen == Counter(kept=1), "the kept builds, then the restatement, then the read"
    assert answer.rows == truth, "the builds it chose are still there: the answer before the restatement"
    laid["events"].extend(late)
    seen = Counter(reads)
    after = QueryEngine(hot).run(TENANTS[0], spec, laid["now"]).rows
    assert reads - seen == Counter(read=1), "the restatement wrote the marks: read again"
    assert after == _truth(laid["events"], TENANTS[0], "timeseries", spec.start, spec.end) != truth
    assert {b.day: b.build for b in day_rollups.valid_builds(hot, start, end)}[days[4]] != chosen[days[4]]
    _answers(hot, laid, start, end)


def test_the_apis_tenant_fair_store_keeps_the_builds_too(hot: HotStore, laid: dict[str, Any]):
    """The API reaches the hot tier through ``TenantFairStore``: the builds are kept through it as through the store
    itself (when the wrapper hid the store's write counter, every question read the marks again: 4 ms of CPU of
    each uncached 90-day question)."""
    fair = TenantFairStore(hot, TenantQuerySlots(per_tenant=2, wait_seconds=5))
    days = laid["days"]
    start, end = _midnight(days[3]) + timedelta(hours=2), _midnight(days[6])
    spec = build_spec(_specs(start, end)["timeseries"], now=laid["now"])
    truth = _truth(laid["events"], TENANTS[0], "timeseries", spec.start, spec.end)
    reads = day_rollups.VALID_BUILDS.reads
    seen = Counter(reads)
    for _ in range(3):
        assert QueryEngine(fair).run(TENANTS[0], spec, laid["now"]).rows == truth
    counted = reads - seen
    assert counted["read"] <= 1 and counted["kept"] >= 2, counted


def test_a_build_marked_before_the_day_rows_of_its_hours_reads_them_as_hour_rows(hot: HotStore,
                                                                                 laid: dict[str, Any]):
    """Builds of part of a day marked before they wrote a day row of their hours (``shaped`` 1) are read as hour
    rows; builds of whole days as day rows, as always."""
    days = laid["days"]
    span = (_midnight(days[5]), _midnight(days[8]) + timedelta(hours=3))
    part = day_rollups.build(hot, days[7], _midnight(days[7]) + timedelta(hours=14))
    assert _day_rows(hot, *span) == 3  # days[5], days[6], and days[7]'s 14 hours
    _answers(hot, laid, *span)
    hot.command("ALTER TABLE rollups_1h_by_day_marks UPDATE shaped = 1 WHERE build = {b:UInt64} "
                "SETTINGS mutations_sync = 2", {"b": part})
    assert _day_rows(hot, *span) == 2
    _answers(hot, laid, *span)
    day_rollups.build(hot, days[7], _midnight(days[7]) + timedelta(hours=14))
    assert _day_rows(hot, *span) == 3


def test_superseded_builds_go_after_the_grace_period(hot: HotStore, laid: dict[str, Any]):
    days = laid["days"]
    valid = {b.build for b in day_rollups.valid_builds(hot, _midnight(laid["gone"]),
                                                       _midnight(days[8]) + timedelta(days=1))}
    kept = set(hot.query_arrow("SELECT DISTINCT build FROM rollups_1h_by_day").column("build").to_pylist())
    shaped = set(hot.query_arrow("SELECT DISTINCT build FROM rollups_1h_by_day_shapes").column("build").to_pylist())
    assert kept > valid, "the restatements' superseded builds are kept for the grace period"
    assert shaped == kept, "every build wrote its shaped rows"
    dropped = day_rollups.collect(hot, grace=timedelta(0))
    assert set(dropped) == kept - valid
    for table in day_rollups.TABLES:
        assert set(hot.query_arrow(f"SELECT DISTINCT build FROM {table}").column("build").to_pylist()) == valid
    _answers(hot, laid, _midnight(days[0]), _midnight(days[8]) + timedelta(hours=23))


def test_a_moved_hour_sends_its_day_back_to_rollups_1h(hot: HotStore, laid: dict[str, Any]):
    days = laid["days"]
    span = (_midnight(days[6]), _midnight(days[7]))
    assert _copied(hot, *span) == 1
    day_rollups.moved(hot, _midnight(days[6]))
    assert _copied(hot, *span) == 0
    _answers(hot, laid, *span)
    day_rollups.build(hot, days[6])
    assert _copied(hot, *span) == 1


def test_another_process_builds_and_reads_through_the_hot_node(hot: HotStore, laid: dict[str, Any]):
    """Dagster runs and the API's workers reach the hot tier over Arrow Flight: a restatement's build and a
    question's read work the same there, and a worker keeps the valid builds and the builds' part of an answer
    under the hot node's counter, whose value changes with the node's incarnation."""
    days = laid["days"]
    token, url = uuid.uuid4().hex, f"grpc://127.0.0.1:{closed_port()}"
    node = start_hot_node(hot, url, token)
    remote = FlightHotStore(url, timeout_s=30, token=token)
    try:
        span = (_midnight(days[0]), _midnight(days[1]))
        assert _copied(remote, *span) == 0  # type: ignore[arg-type]
        day_rollups.build(remote, days[0])  # type: ignore[arg-type]
        day_rollups.written(remote, [_midnight(days[2]) + timedelta(hours=3)])  # type: ignore[arg-type]
        assert _copied(remote, *span) == 1  # type: ignore[arg-type]
        _answers(remote, laid, *span)  # type: ignore[arg-type]
        at = write_count(remote, day_rollups.MARKS)  # type: ignore[arg-type]
        assert at is not None and write_count(remote, day_rollups.MARKS) == at  # type: ignore[arg-type]
        engine = QueryEngine(remote, server_timeout=False)  # type: ignore[arg-type]
        assert engine.kept_pieces is not None
        reads, hits = Counter(day_rollups.VALID_BUILDS.reads), engine.kept_pieces.hits
        for minute in (1, 2):
            start, end = (_midnight(days[3]) + timedelta(hours=6, minutes=minute),
                          _midnight(days[6]) + timedelta(hours=11, minutes=minute))
            spec = build_spec(_specs(start, end)["breakdown"], now=laid["now"])
            assert engine.run(TENANTS[0], spec, laid["now"]).rows == _truth(
                laid["events"], TENANTS[0], "breakdown", spec.start, spec.end)
        assert engine.kept_pieces.hits == hits + 1, "the builds' part read once, kept for the next minute"
        assert day_rollups.VALID_BUILDS.reads - reads == Counter(read=1, kept=1), "the marks read once"
        day_rollups.build(remote, days[4])  # type: ignore[arg-type]  # a write through the node moves its counter
        moved = write_count(remote, day_rollups.MARKS)  # type: ignore[arg-type]
        assert moved is not None and moved != at
        assert engine.run(TENANTS[0], spec, laid["now"]).rows == _truth(
            laid["events"], TENANTS[0], "breakdown", spec.start, spec.end)
        url_again = f"grpc://127.0.0.1:{closed_port()}"
        again = start_hot_node(hot, url_again, token)  # a restarted node over the same folder: the same counts
        other = FlightHotStore(url_again, timeout_s=30, token=token)
        try:
            assert write_count(other, day_rollups.MARKS) not in (None, moved), "another incarnation"  # type: ignore[arg-type]
            assert (write_count(other, day_rollups.MARKS) or 0) & ((1 << 64) - 1) == moved & ((1 << 64) - 1)  # type: ignore[arg-type]
        finally:
            other.close()
            again.shutdown()
    finally:
        remote.close()
        node.shutdown()
    day_rollups.build(hot, days[2])


def test_a_purge_takes_the_rows_from_every_build(settings: Settings, hot: HotStore, laid: dict[str, Any]):
    now, gone = laid["now"], laid["gone"]
    day_rollups.build(hot, gone)  # a superseded build kept for its grace period: it must lose the rows too
    held = "SELECT count() AS n FROM {table} WHERE tenant = {t:String}"
    assert hot.query_arrow(held.replace("{table}", "rollups_1h_by_day"), {"t": GONE}).to_pylist()[0]["n"] > 3
    assert hot.query_arrow(held.replace("{table}", "rollups_1h_by_day_shapes"), {"t": GONE}).to_pylist()[0]["n"] > 3
    policy = load_policy(settings)
    retention = now - _midnight(gone + timedelta(days=1))  # the GONE tenant's day is past it
    policy = dataclasses.replace(policy, tenant_retention={**policy.tenant_retention, GONE: retention})
    report = Purger(settings, policy, AuditLog(settings), now, store=hot).run(confirm_large=True)
    assert any(i.tier == "hot" and i.dataset == "rollups_hourly" and i.tenants == [GONE] for i in report.items)
    for table in ("rollups_1h", "rollups_1h_by_day", "rollups_1h_by_day_shapes"):
        assert hot.query_arrow(held.replace("{table}", table), {"t": GONE}).to_pylist()[0]["n"] == 0, table
    span = (_midnight(gone), _midnight(gone) + timedelta(days=1))
    assert [b.day for b in day_rollups.valid_builds(hot, *span)] == [gone], "the purged day built again"
    engine = QueryEngine(hot)
    answer = engine.run(GONE, build_spec(_specs(*span)["breakdown"], now=now), now)
    assert answer.rows == [] and engine.copy_reads == {"country": 1}, "read from the rebuilt day's shaped rows"


def _marked_days(hot: HotStore) -> set[date]:
    return set(hot.query_arrow("SELECT DISTINCT day FROM rollups_1h_by_day_marks").column("day").to_pylist())


def test_the_marks_of_days_without_builds_go_and_the_others_stay(hot: HotStore, laid: dict[str, Any]):
    """The log's retention: a day that left the hot tier (its builds dropped after the grace period) loses its marks;
    the days still built keep theirs, and every answer stays the truth."""
    days = laid["days"]
    whole = (_midnight(laid["gone"]), _midnight(days[8]) + timedelta(days=1))
    day_rollups.moved(hot, _midnight(days[5]))  # its builds stay for the grace period, and so do its marks
    assert days[5] in _marked_days(hot)
    valid = {b.day: b for b in day_rollups.valid_builds(hot, *whole)}
    assert days[5] not in valid and len(valid) >= 7
    present = set(hot.query_arrow("SELECT DISTINCT build FROM rollups_1h_by_day").column("build").to_pylist())
    held = {day: b for day, b in valid.items() if b.build in present}  # (a build of a day without rows has no part)
    day_rollups.collect(hot, grace=timedelta(0))  # past the grace period
    assert _marked_days(hot) == set(held), "only the days with a build keep marks"
    assert {b.day: b for b in day_rollups.valid_builds(hot, *whole)} == held, "the same builds read"
    _answers(hot, laid, *whole)
    _answers(hot, laid, _midnight(days[4]), _midnight(days[7]))
    day_rollups.changed(hot, days[5])  # a recent mark of a day without builds stays for the grace period
    assert days[5] in _marked_days(hot)
    day_rollups.collect(hot, grace=timedelta(0))
    assert days[5] not in _marked_days(hot)
    day_rollups.build(hot, days[5])  # built again from scratch: read from the copy, answers unchanged
    assert days[5] in {b.day for b in day_rollups.valid_builds(hot, *whole)}
    _answers(hot, laid, _midnight(days[4]), _midnight(days[7]))


def test_a_build_from_before_the_shapes_is_read_in_full(hot: HotStore, laid: dict[str, Any]):
    """An install upgraded to the shapes holds builds that wrote none: those days read the copy's full rows, the
    others their shapes, in one question, until the day is built again."""
    days = laid["days"]
    span = (_midnight(days[2]) + timedelta(hours=3), _midnight(days[5]))
    old = {b.day: b.build for b in day_rollups.valid_builds(hot, *span)}[days[3]]
    hot.command("ALTER TABLE rollups_1h_by_day_shapes DELETE WHERE build = {b:UInt64} SETTINGS mutations_sync = 2",
                {"b": old})
    hot.command("ALTER TABLE rollups_1h_by_day_marks UPDATE shaped = 0 WHERE build = {b:UInt64} "
                "SETTINGS mutations_sync = 2", {"b": old})
    found = day_rollups.read(hot, *span, shape="country", day_rows=True)
    assert found is not None and found.params["day_builds"] == [old] and found.day_rows == 1  # days[4] whole
    assert found.structure == "country"
    _answers(hot, laid, *span)
    day_rollups.build(hot, days[3])
    assert day_rollups.read(hot, *span, shape="country").params.get("day_builds") is None  # type: ignore[union-attr]


def test_the_shaped_rows_moved_to_smaller_granules_answer_the_same(hot: HotStore, laid: dict[str, Any]):
    """Migration 020 moves the shaped rows of every build into a table with granules of at most 256 KiB: the same
    rows, the same answers (run again here over the builds the earlier tests left)."""
    days = laid["days"]
    span = (_midnight(days[0]) + timedelta(hours=5), _midnight(days[8]) + timedelta(hours=20))
    before = _answers(hot, laid, *span)
    count = "SELECT count() AS n, sum(events) AS e, uniqMerge(users) AS u FROM rollups_1h_by_day_shapes"
    held = hot.query_arrow(count).to_pylist()[0]
    assert held["n"] > 0
    migration = next(m for m in load_migrations() if m.version == 20)
    for statement in migration.statements():
        hot.command(statement)
    assert hot.query_arrow(count).to_pylist()[0] == held
    made = hot.query_arrow("SELECT engine_full AS e FROM system.tables WHERE name = 'rollups_1h_by_day_shapes'")
    assert "index_granularity_bytes = 262144" in made.to_pylist()[0]["e"]
    assert _answers(hot, laid, *span) == before


def test_the_marks_write_count_moves_with_every_write_of_them(hot: HotStore, laid: dict[str, Any]):
    """The counter the kept look-up trusts: it moves after every statement naming the marks (a build, a change, a
    trim, a statement run by hand), on every store of the same chDB folder (the API's read-only one too), and not
    after other writes; a hot node that cannot be asked gives none (its client then reads the marks every time)."""
    days = laid["days"]
    reader = hot.read_only()  # type: ignore[attr-defined]
    try:
        at = write_count(hot, day_rollups.MARKS)
        assert at is not None and write_count(reader, day_rollups.MARKS) == at
        hot.command("OPTIMIZE TABLE rollups_1h FINAL")
        assert write_count(reader, day_rollups.MARKS) == at, "another table's write"
        day_rollups.changed(hot, days[6])
        moved = write_count(reader, day_rollups.MARKS)
        assert moved is not None and moved > at
        hot.command("ALTER TABLE rollups_1h_by_day_marks DELETE WHERE day = {d:Date} AND state = 0 AND build = 0 "
                    "AND recorded_at > now64(9) - INTERVAL 1 HOUR SETTINGS mutations_sync = 2", {"d": days[6]})
        assert write_count(hot, day_rollups.MARKS) == moved + 1
        assert _copied(reader, _midnight(days[6]), _midnight(days[7])) == 1, "the read-only store reads the marks anew"
        statement = day_rollups.written_statement([_midnight(days[6]) + timedelta(hours=20)])
        assert statement is not None
        run_commands(hot, [statement])  # as the stream's sink sends its marks: several statements in one call
        assert write_count(reader, day_rollups.MARKS) == moved + 2, "a statement of a batch of commands"
        assert _copied(reader, _midnight(days[6]), _midnight(days[7])) == 0, "the kept builds are read again"
    finally:
        reader.close()
    assert write_count(FlightHotStore("grpc://127.0.0.1:1", timeout_s=1, token="x"), day_rollups.MARKS) is None


def test_kept_parts_answer_a_moving_window_and_are_read_again_after_any_change(hot: HotStore, laid: dict[str, Any]):
    """One engine, as the API holds it, asked the same widgets with a window moving a minute at a time: the builds'
    shaped part is read once and kept (``serving.query.kept_pieces``; for unique users per day, the days wholly in
    the builds), every answer equals the truth (unique users: rollups_1h's answer, its uniq approximate); after the
    stream writes into a copied hour, after a restatement, and after a write into the shaped rows that changes no mark
    (what a purge's delete is before its change mark), the next answer is the fresh one, never the kept part."""
    days = laid["days"]
    engine = QueryEngine(hot)
    assert engine.kept_pieces is not None
    kept = engine.kept_pieces

    def ask(name: str, minute: int = 0) -> list:
        start = _midnight(days[2]) + timedelta(hours=6, minutes=minute)
        end = _midnight(days[6]) + timedelta(hours=11, minutes=minute)
        spec = build_spec(_specs(start, end)[name], now=laid["now"])
        rows = engine.run(TENANTS[0], spec, laid["now"]).rows
        if name in UNIQUE:
            assert rows == QueryEngine(hot, day_copies=False).run(TENANTS[0], spec, laid["now"]).rows, (name, minute)
        else:
            assert rows == _truth(laid["events"], TENANTS[0], name, spec.start, spec.end), (name, minute)
        assert rows == QueryEngine(hot, keep_pieces=False).run(TENANTS[0], spec, laid["now"]).rows
        return rows

    widgets = ("timeseries", "breakdown", "topn", "by_event", "total", "users")
    hits = kept.hits
    for minute in range(1, 4):  # the window's end inside one hour
        for name in widgets:
            ask(name, minute)
    assert kept.hits - hits == 2 * len(widgets), "read at the first minute, kept for the next two"
    rng = random.Random(31)
    stream = [_event(rng, TENANTS[0], _midnight(days[3]) + timedelta(hours=9, minutes=k)) for k in range(12)]
    lay_hot(hot, stream)  # the stream writes into a copied hour: its day is read from rollups_1h
    laid["events"].extend(stream)
    before = ask("timeseries")
    users_before = ask("users")
    day_rollups.build(hot, days[3])
    assert ask("timeseries") == before, "rebuilt: the same answer from the new build"
    assert ask("users") == users_before
    hour = _midnight(days[4]) + timedelta(hours=13)
    late = [_event(rng, TENANTS[0], hour + timedelta(minutes=k)) for k in range(9)]
    _restate(hot, hour, late)
    laid["events"].extend(late)
    after = ask("timeseries")
    assert after != before and [r[1] for r in after] >= [r[1] for r in before], "the restated hour, nothing backwards"
    ask("breakdown")
    assert [r[2] for r in ask("users")] != [r[2] for r in users_before], "the restated day's events, read again"
    # rows of a valid build deleted with no mark written: only the write counter of the shaped rows can tell
    misses = kept.misses
    spec = build_spec(_specs(_midnight(days[2]) + timedelta(hours=6), _midnight(days[6]) + timedelta(hours=11))
                      ["breakdown"], now=laid["now"])
    hot.command("ALTER TABLE rollups_1h_by_day_shapes DELETE WHERE tenant = {t:String} AND hour < {h:DateTime('UTC')} "
                "SETTINGS mutations_sync = 2", {"t": TENANTS[0], "h": _midnight(days[5]).replace(tzinfo=None)})
    shrunk = engine.run(TENANTS[0], spec, laid["now"]).rows
    assert kept.misses == misses + 1 and shrunk == QueryEngine(hot, keep_pieces=False).run(
        TENANTS[0], spec, laid["now"]).rows
    assert sum(r[1] for r in shrunk) < sum(r[1] for r in _truth(laid["events"], TENANTS[0], "breakdown", spec.start,
                                                                 spec.end))
    for day in days[2:5]:
        day_rollups.build(hot, day)  # the days copied again in full (the deleted rows were a build's only)
    ask("breakdown")
