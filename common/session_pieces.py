"""Session pieces: the pre-aggregate of closed hours that the hot tier's session metrics read instead of raw events.

Cutting sessions needs every event of a user in time order; over seven days that is a grouping of every event by
user, about twice the bare scan of the range. The batch layer instead cuts each closed hour into pieces once
(``sql/clickhouse/queries/session_pieces.sql``: per user, client session id and hour, the runs of events without a
gap over the session gap, with their first and last time, page views, other event names and first and last page
view) when it restates the hour, so late events re-sessionize; a question joins the pieces of consecutive hours
again and reads only the other hours raw. The answer is the same as from the raw events (the tests compare both with
an independent truth): a gap between pieces decides a cut exactly as between events, and a chain of 24 hours or more,
which would be cut inside a piece, is counted from its raw events.

The same build writes the hour's *funnel pieces* (``funnel_pieces``: per tenant, hour and user, the user's events of the
hour as arrays of times and dimensions), which the hot tier's funnels by user read instead of the closed hours' raw
events (``serving.analytics.engine``); they are built, forgotten and marked with the session pieces (a mark with
``funnel = 1``: an hour built before they existed has none and is read raw by funnels).

The pieces are a copy of the raw events, so everything that changes a closed hour of events_raw changes them too:
restating an hour forgets its pieces before the swap and builds them after it (``batch.restate``); a purge deletes
the purged tenants' pieces with their events, and the tier mover drops an hour's pieces with the hour
(``storage_tiers.tiers``). ``session_piece_hours`` marks the hours whose pieces are built (and with which session
gap); a question reads those hours' pieces and every other hour of its range raw (open hours, hours not built yet,
the partial hours at the range's ends, a changed gap).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from common.hot_store import HotStore, Statement
from common.sql_files import fill, sql_sections

# the pre-aggregates built and forgotten together, per hour, under one mark: the session metrics' and the funnels'
PIECE_TABLES = ("session_pieces", "funnel_pieces")
# how long the marks of a forgotten hour stay: far past a build (seconds) and a question (the query timeout, 30 s)
MARKS_GRACE = timedelta(minutes=10)


def _sections() -> dict[str, str]:
    return sql_sections("clickhouse/queries/session_pieces.sql")


def _hour(hour: datetime) -> datetime:
    """The hour as ClickHouse parameters take it: naive UTC, on the hour."""
    if hour.tzinfo is not None:
        hour = hour.astimezone(UTC).replace(tzinfo=None)
    return hour.replace(minute=0, second=0, microsecond=0)


def gap_ms(session_gap_minutes: float) -> int:
    return int(session_gap_minutes * 60_000)


def build(store: HotStore, hour: datetime, session_gap_minutes: float) -> None:
    """Cut ``hour`` of events_raw into pieces again (the hour's old pieces dropped first), then mark it built.

    Call it once the hour is closed (nothing inserts into it any more), after its restatement."""
    params = {"hour": _hour(hour), "gap_ms": gap_ms(session_gap_minutes)}
    sections = _sections()
    forget(store, hour)
    store.command(fill(sections["build"], pieces=fill(sections["pieces"], events=sections["hour_events"])), params)
    store.command(sections["build_funnel"], params)
    store.command(sections["mark"], params)


def forget(store: HotStore, hour: datetime, tenants: list[str] | None = None) -> None:
    """Drop ``hour``'s pieces after marking it not built: questions read the hour raw from then on. With ``tenants``,
    only their pieces go (their events are being deleted from the hour: a purge), and the hour stays built for the
    others."""
    params: dict = {"hour": _hour(hour)}
    if tenants is not None:
        for table in PIECE_TABLES:
            store.command(f"ALTER TABLE {table} DELETE WHERE hour = {{hour:DateTime('UTC')}} "
                          "AND tenant IN {tenants:Array(String)} SETTINGS mutations_sync = 2",
                          {**params, "tenants": tenants})
        return
    store.command(_sections()["unmark"], params)
    for table in PIECE_TABLES:
        held = store.query_arrow(f"SELECT count() AS n FROM {table} WHERE hour = {{hour:DateTime('UTC')}}", params)
        if held.to_pylist()[0]["n"]:  # a mutation rewrites the day's parts: only when there is something to delete
            store.command(f"ALTER TABLE {table} DELETE WHERE hour = {{hour:DateTime('UTC')}} "
                          "SETTINGS mutations_sync = 2", params)
    trim_marks(store)


def trim_marks(store: HotStore, grace: timedelta = MARKS_GRACE) -> list[datetime]:
    """The marks' retention: the marks of the hours last marked not built (forgotten: restated, moved out of the hot
    tier, written by the stream after their build) more than ``grace`` ago go. An hour without marks is read raw, as
    one whose newest mark says not built, so no answer changes; a build under way marked its hour within the grace
    period (a build takes seconds), and a mark written after the cutoff stays. Run by every ``forget``; the hours
    whose marks went (naive UTC)."""
    sections = _sections()
    grace_s = int(grace.total_seconds())
    forgotten = store.query_arrow(sections["forgotten_hours"], {"grace_s": grace_s}).column("epoch").to_pylist()
    hours = sorted(datetime.fromtimestamp(int(epoch), UTC).replace(tzinfo=None) for epoch in forgotten)
    if hours:  # a mutation rewrites the marks' parts: only when there is something to delete
        store.command(sections["trim_marks"], {"hours": hours, "grace_s": grace_s})
    return hours


def written(store: HotStore, hours: list[datetime]) -> None:
    """Events were inserted into ``hours`` after they may have been built (a stream restarted on a new
    checkpoint, an hour restated while still open): those built are read raw from now on, so no question misses
    the new events, until the batch layer restates and builds them again. Called by the stream after each insert."""
    statement = written_statement(hours)
    if statement is not None:
        store.command(*statement)


def written_statement(hours: list[datetime]) -> Statement | None:
    """``written`` as a statement to run (None: nothing to mark), for a writer that sends it with others in one
    call (``common.hot_store.run_commands``); run it after the insert into ``hours``, as ``written``."""
    if not hours:
        return None
    return _sections()["unmark_written"], {"hours": sorted({_hour(h) for h in hours})}


class BuiltHours(NamedTuple):
    hours: list[datetime]  # naive UTC
    version: tuple[str, int]  # what marks_version answers for the same range, read in the same query


def built_hours(store: HotStore, scan_start: datetime, scan_end: datetime, session_gap_minutes: float) -> BuiltHours:
    """The whole hours of ``[scan_start, scan_end)`` whose pieces are built with this session gap, and the marks'
    version they were read at."""
    return _whole_hours(store.query_arrow(_sections()["built_hours"], {
        "gap_ms": gap_ms(session_gap_minutes), "scan_start": _naive(scan_start), "scan_end": _naive(scan_end)}),
        scan_start, scan_end)


def _whole_hours(rows: Any, scan_start: datetime, scan_end: datetime) -> BuiltHours:
    start, end = _naive(scan_start), _naive(scan_end)
    hours = [hour for hour, ok in zip((datetime.fromtimestamp(int(h), UTC).replace(tzinfo=None)
                                       for h in rows["epoch"].to_pylist()), rows["ok"].to_pylist(), strict=True)
             if ok and start <= hour and hour + timedelta(hours=1) <= end]
    newest = max(rows["newest"].to_pylist(), default="")
    return BuiltHours(hours, (newest, sum(rows["marks"].to_pylist())))


def funnel_hours(store: HotStore, scan_start: datetime, scan_end: datetime) -> BuiltHours:
    """``built_hours`` for funnels: the whole hours of the range built with funnel pieces (any session gap)."""
    return _whole_hours(store.query_arrow(_sections()["funnel_hours"], {
        "scan_start": _naive(scan_start), "scan_end": _naive(scan_end)}), scan_start, scan_end)


def marks_version(store: HotStore, scan_start: datetime, scan_end: datetime) -> tuple[str, int]:
    """The newest mark of the range's hours and their count: a restatement forgets an hour (a new mark) before it
    deletes its pieces, so a question that reads the same version before and after reading the pieces read no
    hour whose pieces went away under it."""
    row = store.query_arrow(_sections()["marks_version"], {"scan_start": _naive(scan_start),
                                                          "scan_end": _naive(scan_end)}).to_pylist()[0]
    return str(row["newest"]), int(row["marks"])


def raw_ranges(scan_start: datetime, scan_end: datetime, built: list[datetime]) -> list[tuple[datetime, datetime]]:
    """The parts of ``[scan_start, scan_end)`` outside the built hours, as few ranges as possible (naive UTC)."""
    start, end = _naive(scan_start), _naive(scan_end)
    ranges: list[tuple[datetime, datetime]] = []
    at = start
    for hour in sorted(built):
        if hour > at:
            ranges.append((at, hour))
        at = max(at, hour + timedelta(hours=1))
    if at < end:
        ranges.append((at, end))
    return ranges


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment
