"""Day copies of the hourly rollups: what the hot tier's dashboard questions read for the closed hours of a day.

``rollups_1h`` is partitioned by hour, so that the batch layer swaps one restated hour atomically; a 7-day question
therefore opens 168 small parts, and at dashboard sizes the fixed cost of each part is most of the answer's time.
``rollups_1h_by_day`` holds the same rows (merged per key) with one partition per day: the batch layer copies a
day's closed hours into it, and a question reads those hours from the copy and every other hour of its range (the
open ones, those of days not built yet: a fresh install, old data) from ``rollups_1h``, in one query. The answer is
the one ``rollups_1h`` alone gives (the tests compare both with an independent truth); no setting is needed.

The copy follows ``rollups_1h`` as ``common.session_pieces`` follows ``events_raw``:

* **builds** (``build``): a build copies the day's hours before ``through`` into a partition of its own (its id is
  the hot tier's clock, in ns, when it started), and is marked built once written. The batch layer builds the day
  when it restates an hour of it (``batch.restate``: through the restated hour's end, or as far as an earlier build
  of the day reached), so the day's closed hours are copied as they close, a day's copy rebuilt at most once per
  restated hour.
* **changes** (``changed``, ``written``): after anything changes an hour of a day in ``rollups_1h`` (a restatement,
  a purge, the tier mover dropping it, the stream writing into a copied hour), a change is recorded for the day. A
  build is *valid* when it is marked built and started after the day's newest change, so a build that could have
  read the hour before it changed is never read, whichever finishes first (two restatements of the same day may run
  at once). A question reads each day's newest valid build, and ``rollups_1h`` for the rest.
* **superseded builds** are dropped ``GRACE`` after they stopped being valid (``collect``, run by every build and
  change), and the log's marks of days left without any build (moved out of the hot tier) go with them
  (``trim_marks``): a question reads the builds valid when it started, and its whole answer comes from rows that stay
  until it has finished, so an answer never goes backwards while a restatement races it — without a second read of the
  log. A purge does not wait: it deletes the purged rows from every build at once (``erase``), as from
  ``rollups_1h``.

* **shapes** (``rollups_1h_by_day_shapes``): the same copy step writes the build's rows re-aggregated per dashboard
  shape (``SHAPES``: no dimension, the event, the event and one of country, device, page), a row per hour, and a
  day row (hour = the day's start) of every hour it copies, the whole day or the part of today built so far.
  ``read`` picks, for a question, the narrowest shape that holds every dimension it groups or filters by (two or
  more: the full rows) and, for the builds whose every copied hour is in the range when the question buckets no
  finer than a UTC day, the day rows: a 7-day question reads a few thousand rows and merges one unique-user state
  per day and key instead of one per hour (today's too: its hours up to the last build). Builds marked before
  today's day rows existed (``shaped`` 1) have day rows only when they copied the whole day. A build's shaped rows
  share its partition id, so ``collect`` and ``erase`` treat both tables alike; a build made before the shapes
  existed is read in full.
* **the look-up** (``valid_builds``): the valid builds of a question's days are kept per process while the marks do
  not change (``_ValidBuilds``: an embedded store counts every write of the marks), so most questions read no marks.

Everything runs through the hot-store interface (the hot node in embedded mode). The log's times and the build ids
come from the same clock, the hot tier's; a cluster of several servers would need them from one of them.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from common.hot_store import HotStore, Statement, write_count
from common.sql_files import fill, sql_sections

GRACE = timedelta(minutes=10)  # far past the longest question (the query timeout, 30 s by default)
_EPOCH = datetime(1970, 1, 1)
BUILDING, BUILT, CHANGED = 2, 1, 0
SHAPED, REACH_ROWS = 1, 2  # a built mark's `shaped`: the build's shaped rows (see Build.shaped)
TOTAL = "total"  # the shape without event or dimension: rollups_1h's projection `totals` answers its open hours
# the dimension each shape keeps besides the event ('total' keeps not even the event); FULL: the copy's full rows
SHAPES: dict[str, str | None] = {TOTAL: None, "event": None, "country": "country", "device": "device",
                                 "page": "page"}
FULL = "full"
HOUR, DAY = 3600, 86400  # the shapes' grains: a row per hour, a row per UTC day
TABLES = ("rollups_1h_by_day", "rollups_1h_by_day_shapes")
MARKS = "rollups_1h_by_day_marks"


@dataclass(frozen=True)
class Build:
    """A day's valid build: its rows copy the day's hours before ``through`` (naive UTC)."""

    day: date
    build: int
    through: datetime
    # 0: no shaped rows (builds older than the shapes); SHAPED: hour rows, and day rows when it copies the whole day;
    # REACH_ROWS: hour rows, and day rows of every hour it copies (one for a build of part of a day too)
    shaped: int = 0

    @property
    def start(self) -> datetime:
        return _day_start(self.day)

    @property
    def whole(self) -> bool:
        """It copies every hour of its day."""
        return self.through >= self.start + timedelta(days=1)

    @property
    def day_rows(self) -> bool:
        """Its shapes have day rows (a row per key for every hour it copies)."""
        return self.shaped >= REACH_ROWS or (self.shaped == SHAPED and self.whole)


@dataclass(frozen=True)
class Part:
    """One part of a ``Read``: a subquery with rollups_1h's columns, its parameters, and the span ``[start, end)``
    (naive UTC) its rows lie in."""

    sql: str
    params: dict[str, Any]
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Read:
    """What a question reads instead of rollups_1h: ``sql`` (a subquery with rollups_1h's columns) and its ``params``;
    ``structure``: the shape read for the copied days (``FULL``: the copy's full rows); ``builds``: the valid builds
    read; ``day_rows``: how many of them are read as day rows.

    The same rows in two parts, for a reader that keeps answers of the first: ``shaped``, the valid builds' shaped
    rows (None: none read), which change only with the builds chosen or a write into their table
    (``rollups_1h_by_day_shapes``: a build, a purge, a drop); ``rest``, everything else (the open hours of
    rollups_1h, builds read in full; None: nothing else)."""

    sql: str
    params: dict[str, Any]
    structure: str
    builds: list[int]
    day_rows: int
    shaped: Part | None = None
    rest: Part | None = None


def _sections() -> dict[str, str]:
    return sql_sections("clickhouse/queries/day_rollups.sql")


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


def _day_start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def _day(day: date) -> str:
    """A day as a query parameter: ISO text (the hot node's requests carry datetimes, not dates)."""
    return day.isoformat()


def _mark(store: HotStore, day: date, state: int, build: int = 0, through: datetime = _EPOCH,
          shaped: int = 0) -> None:
    store.command(_sections()["mark"], {"day": _day(day), "state": state, "build": build, "through": through,
                                        "shaped": shaped})


def _now_ns(store: HotStore) -> int:
    return int(store.query_arrow(_sections()["now_ns"]).to_pylist()[0]["ns"])


def reach(store: HotStore, day: date) -> datetime | None:
    """How far the day's builds copied (naive UTC), None when it was never built."""
    through = store.query_arrow(_sections()["reach"], {"day": _day(day)}).to_pylist()[0]["through"]
    return datetime.fromtimestamp(int(through), UTC).replace(tzinfo=None) if through else None


def build(store: HotStore, day: date, through: datetime | None = None) -> int:
    """Copy the day's hours before ``through`` (its end by default) from rollups_1h as a new build; its id.

    The hours should be closed (the stream inserts nothing into them any more; when it does, it records a change
    and the hours are read from rollups_1h again until the next build)."""
    start = _day_start(day)
    through = min(_naive(through), start + timedelta(days=1)) if through is not None else start + timedelta(days=1)
    sections = _sections()
    build_id = _now_ns(store)
    _mark(store, day, BUILDING, build_id, through)  # before the copy: a change recorded from now on invalidates it
    store.command(sections["copy"], {"build": build_id, "day_start": start, "through": through})
    store.command(shape_sql(), {"build": build_id})
    _mark(store, day, BUILT, build_id, through, shaped=REACH_ROWS)
    collect(store)
    return build_id


def shape_sql() -> str:
    """The copy step's second statement: a build's shaped rows, hour rows and a day row per key of every hour it
    copies (``{build}``: its id), one INSERT so that they are one part."""
    sections = _sections()
    return sections["shape_hours"] + "\nUNION ALL\n" + sections["shape_days"]


def changed(store: HotStore, day: date) -> None:
    """An hour of ``day`` changed in rollups_1h (call it after the change): the day's builds are no longer read."""
    _mark(store, day, CHANGED)
    collect(store)


def restated(store: HotStore, hour: datetime) -> int:
    """The batch layer replaced ``hour`` in rollups_1h: record the change, then build its day again, through the
    hour's end or as far as an earlier build of the day reached. Returns the new build's id."""
    hour = _naive(hour).replace(minute=0, second=0, microsecond=0)
    day = hour.date()
    earlier = reach(store, day)
    changed(store, day)
    return build(store, day, max(hour + timedelta(hours=1), earlier or hour))


def moved(store: HotStore, hour: datetime) -> None:
    """The tier mover dropped ``hour`` from rollups_1h: its day is read from rollups_1h (what is left of it) until its
    builds go after the grace period (the day is leaving the hot tier: it is not built again)."""
    changed(store, _naive(hour).date())


def erase(store: HotStore, hour: datetime, tenants: list[str] | None = None) -> None:
    """A purge deleted ``hour`` (or only ``tenants``' rows of it) from rollups_1h: the same rows go from every build
    of the copy now (a purge does not wait for the grace period), and the day is no longer read from the copy.
    ``rebuild`` the day once its hours are purged."""
    hour = _naive(hour).replace(minute=0, second=0, microsecond=0)
    params: dict[str, Any] = {"hour": hour}
    where = "hour = {hour:DateTime('UTC')}"
    if tenants is not None:
        where += " AND tenant IN {tenants:Array(String)}"
        params["tenants"] = tenants
    params["day_start"] = _day_start(hour.date())
    # a day row holds every hour of its day: it goes with any of them (its build is not read any more anyway)
    wheres = {"rollups_1h_by_day": where,
              "rollups_1h_by_day_shapes": where.replace("hour = {hour:DateTime('UTC')}",
                                                        "(hour = {hour:DateTime('UTC')} OR (grain = 86400 AND "
                                                        "hour = {day_start:DateTime('UTC')}))")}
    for table, condition in wheres.items():
        held = store.query_arrow(f"SELECT count() AS n FROM {table} WHERE {condition}", params)
        if held.to_pylist()[0]["n"]:  # a mutation rewrites the builds' parts: only when there is something to delete
            store.command(f"ALTER TABLE {table} DELETE WHERE {condition} SETTINGS mutations_sync = 2", params)
    changed(store, hour.date())


def rebuild(store: HotStore, day: date) -> int | None:
    """Build ``day`` again as far as its builds reached, if it was ever built (after a purge); the new build's id."""
    earlier = reach(store, day)
    return build(store, day, earlier) if earlier is not None else None


def written(store: HotStore, hours: list[datetime]) -> None:
    """The stream inserted events into ``hours``: a build of their days that copied one of them is not read any more
    (only when some build reached that far: the open hours the stream writes every micro-batch cost one small read).
    Called by the stream after each insert."""
    statement = written_statement(hours)
    if statement is not None:
        store.command(*statement)


def written_statement(hours: list[datetime]) -> Statement | None:
    """``written`` as a statement to run (None: nothing to mark), for a writer that sends it with others in one
    call (``common.hot_store.run_commands``); run it after the insert into ``hours``, as ``written``."""
    if not hours:
        return None
    naive = [_naive(h) for h in hours]
    return _sections()["written"], {"days": sorted({_day(h.date()) for h in naive}),
                                    "earliest": min(naive).replace(minute=0, second=0, microsecond=0)}


def valid_builds(store: HotStore, start: datetime, end: datetime, kept: bool = True) -> list[Build]:
    """The valid build of each day of ``[start, end)`` that has one, oldest day first: per day, its newest build
    marked built, if it started after the day's newest change. Kept per process while the marks do not change
    (``_ValidBuilds``; ``kept`` False: read every time, the benchmark's comparison)."""
    start, end = _naive(start), _naive(end)
    last = (end - timedelta(microseconds=1)).date()
    if not kept:
        return _valid_builds_read(store, start.date(), last)
    return VALID_BUILDS.of_days(store, start.date(), last)


def _valid_builds_read(store: HotStore, first: date, last: date) -> list[Build]:
    rows = store.query_arrow(_sections()["marks"], {"first": _day(first), "last": _day(last)}).to_pylist()
    newest: dict[date, dict[str, Any]] = {}
    changes: dict[date, int] = {}
    for r in rows:
        if r["state"] == BUILT and int(r["build"]) > int(newest.get(r["day"], {"build": 0})["build"]):
            newest[r["day"]] = r
        elif r["state"] == CHANGED:
            changes[r["day"]] = max(changes.get(r["day"], 0), int(r["at"]))
    return [Build(day, int(r["build"]), datetime.fromtimestamp(int(r["through"]), UTC).replace(tzinfo=None),
                  int(r["shaped"]))
            for day, r in sorted(newest.items()) if int(r["build"]) > changes.get(day, 0)]


class _ValidBuilds:
    """The valid builds of a span of days, kept per process while the marks do not change.

    Reading the marks is a query of its own before each question (5-6 ms of a 20 ms answer). An embedded store counts
    every write into the marks (``common.hot_store.write_count``: chDB has one process per folder, so every build,
    change, stream write and trim passes through this process); the counter is read *before* the marks, so rows kept
    under a count are never older than that count, and any later write moves it: a question after a restatement (or
    racing it) chooses exactly the builds a fresh read would. The hot node's clients ask the hot node for its counter
    (one Flight round trip; the node's incarnation is part of it). Stores without a counter (a ClickHouse server)
    read the marks every time."""

    SPANS = 256  # spans kept (a dashboard's windows share their days: a few spans per tenant-independent range)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, date, date], tuple[int, list[Build]]] = {}
        self.reads: Counter[str] = Counter()  # "kept" / "read": how each look-up was answered (tests, benchmarks)

    def of_days(self, store: HotStore, first: date, last: date) -> list[Build]:
        count = write_count(store, MARKS)
        if count is None:
            self.reads["read"] += 1
            return _valid_builds_read(store, first, last)
        key = (getattr(store, "dsn", ""), first, last)
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and kept[0] == count:
            self.reads["kept"] += 1
            return list(kept[1])
        builds = _valid_builds_read(store, first, last)
        self.reads["read"] += 1
        with self._lock:
            if len(self._kept) >= self.SPANS:
                self._kept.clear()
            self._kept[key] = (count, builds)
        return list(builds)


VALID_BUILDS = _ValidBuilds()


def shape_for(dimensions: set[str], by_event: bool) -> str:
    """The narrowest shape holding ``dimensions`` (those a question groups or filters by); ``by_event``: a metric or
    the question needs the event. Two dimensions besides the event: the full rows (``FULL``)."""
    others = dimensions - {"event"}
    if not others:
        return "event" if by_event or "event" in dimensions else TOTAL
    if len(others) == 1:
        return next(iter(others))
    return FULL


def relation(store: HotStore, start: datetime, end: datetime) -> tuple[str, dict[str, Any]] | None:
    """The copy's full rows for ``[start, end)`` (see ``read``): the FROM text and its parameters, or None."""
    found = read(store, start, end)
    return None if found is None else (found.sql, found.params)


def read(store: HotStore, start: datetime, end: datetime, shape: str = FULL, day_rows: bool = False, *,
         kept: bool = True, reach_rows: bool = True) -> Read | None:
    """What a question over ``[start, end)`` reads instead of rollups_1h, or None when no day of the range has a
    valid build reaching into it (rollups_1h alone answers). ``shape``: the narrowest one answering the question
    (``shape_for``; ``FULL`` reads the copy's full rows); ``day_rows``: the question buckets no finer than a UTC day,
    so the builds whose every copied hour is in the range are read as day rows. ``kept`` (``valid_builds``) and
    ``reach_rows`` (False: day rows only of whole days, as before builds had them for part of a day) are the
    benchmark's comparisons."""
    start, end = _naive(start), _naive(end)
    sections = _sections()
    spans: list[tuple[datetime, datetime]] = []
    shaped_spans: list[tuple[datetime, datetime]] = []
    groups: dict[str, list[int]] = {"day_builds": [], "hour_builds": [], "whole_day_builds": []}
    for b in valid_builds(store, start, end, kept):
        lo, hi = max(b.start, start), min(b.through, end)
        if lo >= hi:
            continue
        spans.append((lo, hi))
        if shape == FULL or not b.shaped:
            groups["day_builds"].append(b.build)
            continue
        shaped_spans.append((lo, hi))
        if (day_rows and (b.day_rows if reach_rows else b.whole and b.shaped > 0) and lo == b.start
                and hi == b.through):  # every hour it copied is in the range
            groups["whole_day_builds"].append(b.build)
        else:
            groups["hour_builds"].append(b.build)
    if not spans:
        return None
    shaped: Part | None = None
    if shaped_spans:
        shaped = Part(fill(sections["relation"], branches=sections["shape_branch"]),
                      {"shape": shape, "hour_builds": groups["hour_builds"],
                       "whole_day_builds": groups["whole_day_builds"]},
                      _hour_floor(shaped_spans[0][0]), _hour_ceil(shaped_spans[-1][1]))
    rest_params: dict[str, Any] = {}
    rest_branches = []
    if groups["day_builds"]:
        rest_branches.append(sections["copy_branch"])
        rest_params["day_builds"] = groups["day_builds"]
    ranges = _outside(start, end, spans)
    if ranges:
        for i, (lo, hi) in enumerate(ranges):
            rest_params[f"hours_{i}_from"], rest_params[f"hours_{i}_to"] = lo, hi
        hour_ranges = " OR ".join(f"(hour >= {{hours_{i}_from:DateTime('UTC')}} AND "
                                  f"hour < {{hours_{i}_to:DateTime('UTC')}})" for i in range(len(ranges)))
        hours = sections["hours_total_branch" if shape == TOTAL else "hours_branch"]
        rest_branches.append(fill(hours, hour_ranges=hour_ranges))
    rest = (Part(fill(sections["relation"], branches="\n UNION ALL\n ".join(rest_branches)), rest_params, start, end)
            if rest_branches else None)
    branches = ([sections["shape_branch"]] if shaped else []) + rest_branches
    builds = [b for ids in groups.values() for b in ids]
    return Read(fill(sections["relation"], branches="\n UNION ALL\n ".join(branches)),
                (shaped.params if shaped else {}) | rest_params, shape if shaped else FULL, builds,
                len(groups["whole_day_builds"]), shaped, rest)


def _hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _hour_ceil(moment: datetime) -> datetime:
    """The next hour's start, unless ``moment`` is one: the shaped rows sit on hours, so ``hour < end`` reads the same
    rows either way, and a part ending inside an hour keeps one statement for the whole hour."""
    floor = _hour_floor(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def _outside(start: datetime, end: datetime, spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The parts of ``[start, end)`` outside ``spans`` (sorted, not overlapping), as few ranges as possible."""
    out: list[tuple[datetime, datetime]] = []
    at = start
    for lo, hi in spans:
        if lo > at:
            out.append((at, lo))
        at = max(at, hi)
    if at < end:
        out.append((at, end))
    return out


def collect(store: HotStore, grace: timedelta = GRACE) -> list[int]:
    """Drop the builds that stopped being valid more than ``grace`` ago (or were never marked and were superseded
    that long ago); the ids dropped."""
    sections = _sections()
    present = [int(b) for b in store.query_arrow(sections["present"]).column("build").to_pylist()]
    if not present:
        return []
    log = store.query_arrow(sections["log"], {"builds": present}).to_pylist()
    days: dict[date, list[dict[str, Any]]] = {}
    for row in log:
        days.setdefault(row["day"], []).append(row)
    day_of = {int(r["build"]): r["day"] for r in log if r["state"] == BUILDING}
    now = _now_ns(store)
    cutoff = now - int(grace.total_seconds() * 1e9)
    dropped = []
    for build_id in present:
        day = day_of.get(build_id)
        superseded = _superseded_at(days[day], build_id) if day is not None else 0  # no log left: drop
        if superseded is not None and superseded < cutoff:
            for table in TABLES:  # a partition a table does not hold: nothing to drop
                store.command(f"ALTER TABLE {table} DROP PARTITION {{build:UInt64}}", {"build": build_id})
            dropped.append(build_id)
    kept = sorted({_day(day_of[b]) for b in present if b not in dropped and b in day_of})
    trim_marks(store, kept, cutoff)
    return dropped


def trim_marks(store: HotStore, kept_days: list[str], cutoff_ns: int) -> int:
    """The log's retention: the marks recorded before ``cutoff_ns`` of the days none of whose builds is in the copy go
    (a day's marks only tell which of its builds to read; with none left they are read from rollups_1h either way).
    A day's marks are not removed one by one at random merges, as a TTL would: a build's marks go only with it, so a
    change can never go before a build it invalidates. A build under way started after the cutoff (a build takes
    seconds, the grace minutes): its marks stay. Returns how many marks went (``collect`` calls this)."""
    sections = _sections()
    params: dict[str, Any] = {"kept": kept_days, "cutoff": cutoff_ns}
    old = int(store.query_arrow(sections["old_marks"], params).to_pylist()[0]["n"])
    if old:  # a mutation rewrites the log's parts: only when there is something to delete
        store.command(sections["trim_marks"], params)
    return old


def _superseded_at(rows: list[dict[str, Any]], build_id: int) -> int | None:
    """When ``build_id`` stopped being read (ns): the first change after it started or the first newer build marked
    built; None while it may still be the day's valid build."""
    after = [int(r["at"]) for r in rows if (r["state"] == CHANGED and int(r["at"]) > build_id)
             or (r["state"] == BUILT and int(r["build"]) > build_id)]
    return min(after) if after else None
