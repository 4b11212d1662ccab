"""Answers funnels, retention, paths and session metrics from one engine per question.

A user's sequence is never split between engines: the whole scan of a question (its range, plus the
24 hours before it that sessions may reach back, plus the conversion window after it) goes to the hot
tier's ``events_raw`` when the hot tier still holds all of it, and otherwise to DuckDB over the lake's
raw events (the archive and the cold tier), which hold everything older than the archive's last hour.
Retention needs each user's first-ever start event, so it reads the lake unless the hot tier is forced; the
hours the archive has not reached yet come from the hot tier as rows only (``retention`` below), and DuckDB
computes the grid over both.

SQL lives in ``sql/clickhouse/queries/analytics.sql`` and ``sql/duckdb/queries/analytics.sql``: names
come from whitelists here, values travel as parameters.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from common import session_pieces
from common.hot_store import HotStore
from common.settings import Settings
from common.sql_files import fill, sql_sections
from serving.analytics.definitions import SESSION_CUT, FunnelSpec, PathsSpec, RetentionSpec, SessionsSpec
from serving.analytics.funnel_sql import conversions as walked_conversions
from serving.analytics.funnel_sql import mask_sql, packed_parts, packs, walk_parts, walked_body, walks_in_sql
from serving.analytics.profiles import ProfileStore, is_profile_field, property_of
from serving.analytics.sequences import (
    Conversion,
    funnel_answer,
    paths_answer,
    retention_answer,
    sessions_answer,
)
from serving.query.engine import QueryTimeout
from serving.query.spec import QueryError
from storage_tiers.lake.sql import lake_connection, lake_events_end

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOT_MARGIN = timedelta(hours=1)  # the hot tier drops whole hourly partitions: stay clear of the oldest one
PIECES_ATTEMPTS = 3  # reads of the session pieces raced by restatements before the raw events answer alone
# more users with ties on time than this: the funnel's second pass walks every unit instead of a list of users
TIED_USERS_LISTED = 10_000
_CH_PARAM = re.compile(r"\{(\w+):")
_DUCK_PARAM = re.compile(r"\$(\w+)")
# period → (ClickHouse start-of-period function, DuckDB date_trunc unit, dateDiff unit, periods per unit)
PERIOD_SQL = {"day": ("toDate", "day", "day", 1), "week": ("toMonday", "week", "day", 7),
              "month": ("toStartOfMonth", "month", "month", 1)}


@dataclass
class Answer:
    """``conversions``: each unit's best attempt of a funnel, built on first use (only the drop-off list
    reads them). The sources stay ``hot:events_raw`` when session pieces answered: they are a copy of its rows."""

    body: dict[str, Any]
    sources: list[str]
    took_ms: float = 0.0
    walked: Callable[[], list[Conversion]] = list
    pieces: bool = False  # session metrics: read from the session pieces of closed hours (a copy of events_raw)

    @cached_property
    def conversions(self) -> list[Conversion]:
        return self.walked()


class AnalyticsEngine:
    """``store``: the hot tier; ``lake_factory``: opens a DuckDB session with the lake's views; ``lake_end``: where
    the lake's raw events end (the end of the newest hour archived; None while the lake is empty)."""

    def __init__(self, store: HotStore | None, settings: Settings, *, hot_horizon: timedelta = timedelta(days=7),
                 timeout_seconds: float = 30.0,
                 lake_factory: Callable[[Settings], duckdb.DuckDBPyConnection] = lake_connection,
                 lake_end: Callable[[Settings], datetime | None] = lake_events_end,
                 use_session_pieces: bool = True, packed_funnel: bool = True,
                 funnel_on_packed: bool = True, use_funnel_pieces: bool = True) -> None:
        self.store = store
        self.settings = settings
        self.hot_horizon = hot_horizon
        self.timeout_seconds = timeout_seconds
        self.lake_factory = lake_factory
        self.lake_end = lake_end
        self.use_session_pieces = use_session_pieces  # False: the raw events only (the benchmark's comparison)
        self.packed_funnel = packed_funnel  # False: the hot funnel sorts by event id (the benchmark's comparison)
        # False: the packed walk compares an array of times cut out of the packed events (the walk before)
        self.funnel_on_packed = funnel_on_packed
        self.use_funnel_pieces = use_funnel_pieces  # False: funnels read raw events only (the benchmark's comparison)
        self.profiles = ProfileStore(store) if store is not None else None
        self.gap_ms = int(settings.session_gap_minutes * 60_000)
        self.ch = sql_sections("clickhouse/queries/analytics.sql")
        self.duck = sql_sections("duckdb/queries/analytics.sql")
        self.pieces = sql_sections("clickhouse/queries/session_pieces.sql")

    # ---------------------------------------------------------------------------------------- routing

    def engine_for(self, tier: str, scan_start: datetime, now: datetime) -> str:
        """``hot`` when the hot tier holds the whole scan (or is forced), else ``lake``."""
        if tier == "hot":
            return "hot"
        if tier == "lake":
            return "lake"
        return "hot" if scan_start >= now - self.hot_horizon + HOT_MARGIN else "lake"

    # -------------------------------------------------------------------------------------- questions

    def funnel(self, tenant: str, spec: FunnelSpec, now: datetime, *, units: bool = True) -> Answer:
        """``units``: whether the walk returns every unit's user id at once (the drop-off list reads them). Without,
        the hot tier's packed walk returns only counts and times (the ids of 500,000 units cost about a fifth of the
        query at 10 M events) and ``conversions`` walks again on first use."""
        started = time.perf_counter()
        scan_start = spec.start - SESSION_CUT if spec.unit == "sessions" else spec.start
        scan_end = spec.end + spec.window + timedelta(milliseconds=1)  # the window's end is included
        engine = self.engine_for(spec.tier, scan_start, now)
        source = "sessionized" if spec.unit == "sessions" else "scan"
        keep = "1" if spec.mode == "strict" else ("event IN {events:Array(String)}" if engine == "hot"
                                                  else "list_contains($events, event)")
        if walks_in_sql(spec):
            walked = self._funnel_walk(engine, tenant, spec, scan_start, scan_end, source=source, keep=keep,
                                       units=units)
            if not units and engine == "hot" and self.packed_funnel and packs(spec):
                return Answer(walked_body(spec, walked), [_source(engine)], _ms(started),
                              lambda: walked_conversions(self._funnel_walk(
                                  engine, tenant, spec, scan_start, scan_end, source=source, keep=keep)))
            return Answer(walked_body(spec, walked), [_source(engine)], _ms(started),
                          lambda: walked_conversions(walked))
        table = self._units(engine, tenant, scan_start, scan_end, source=source, keep=keep,
                            unit="session" if spec.unit == "sessions" else "''", events=spec.event_names)
        for name in spec.profile_fields:  # the query-time join: each row's user's property as a column
            values = self._profile_property(tenant, name)
            table = table.append_column(name, pa.array([values.get(u, "") for u in table["user_id"].to_pylist()],
                                                       pa.string()))
        body, conversions = funnel_answer(spec, table)
        return Answer(body, [_source(engine)], _ms(started), lambda: conversions)

    def paths(self, tenant: str, spec: PathsSpec, now: datetime) -> Answer:
        started = time.perf_counter()
        scan_start, scan_end = spec.start - SESSION_CUT, spec.end + SESSION_CUT
        engine = self.engine_for(spec.tier, scan_start, now)
        anchor = "{anchor:String}" if engine == "hot" else "$anchor"
        sections = self.ch if engine == "hot" else self.duck
        sessionized = fill(sections["sessionized"], scan=sections["scan"])
        keep = f"(user_id, session) IN (SELECT user_id, session FROM ({sessionized}) WHERE event = {anchor})"
        table = self._units(engine, tenant, scan_start, scan_end, source="sessionized", keep=keep, unit="session",
                            anchor=spec.start_event or spec.end_event)
        return Answer(paths_answer(spec, table), [_source(engine)], _ms(started))

    def sessions(self, tenant: str, spec: SessionsSpec, now: datetime) -> Answer:
        started = time.perf_counter()
        scan_start, scan_end = spec.start - SESSION_CUT, spec.end + SESSION_CUT
        engine = self.engine_for(spec.tier, scan_start, now)
        non_interactive = sorted(set(spec.non_interactive) | {
            n.strip() for n in self.settings.non_interactive_events.split(",") if n.strip()})
        params = self._params(tenant, scan_start, scan_end, start=spec.start, end=spec.end,
                              start_ms=int(spec.start.timestamp() * 1000), end_ms=int(spec.end.timestamp() * 1000),
                              non_interactive=non_interactive)
        pieces = False
        if engine == "hot":
            table, pieces = self._hot_sessions(tenant, spec, scan_start, scan_end, params)
        else:
            table = self._run(engine, fill(self.duck["session_metrics"], group=spec.by or "''", sessionized=fill(
                self.duck["sessionized"], scan=self.duck["scan"])), params)
        body = sessions_answer(spec, table)
        body["non_interactive"] = non_interactive
        return Answer(body, [_source(engine)], _ms(started), pieces=pieces)

    def _hot_sessions(self, tenant: str, spec: SessionsSpec, scan_start: datetime, scan_end: datetime,
                      params: dict[str, Any]) -> tuple[pa.Table, bool]:
        """The session metrics' rows (one per group) from the session pieces of the closed hours the batch layer
        built (``common.session_pieces``) and the raw events of the other hours; all raw without such hours (then
        False: no pieces read)."""
        if not self.use_session_pieces or self.store is None:
            return self._run("hot", self._hot_session_metrics(spec), params), False
        for _ in range(PIECES_ATTEMPTS):
            hours, version = session_pieces.built_hours(self.store, scan_start, scan_end,
                                                        self.settings.session_gap_minutes)
            if not hours:
                break
            rows = self._sessions_from_pieces(spec, hours, scan_start, scan_end, params)
            if session_pieces.marks_version(self.store, scan_start, scan_end) == version:
                return rows, True
            # an hour of the range was restated meanwhile: its pieces may have been missing when they were read
        return self._run("hot", self._hot_session_metrics(spec), params), False

    def _sessions_from_pieces(self, spec: SessionsSpec, hours: list[datetime], scan_start: datetime,
                              scan_end: datetime, params: dict[str, Any]) -> pa.Table:
        ranges = session_pieces.raw_ranges(scan_start, scan_end, hours)
        bounds = {f"rest_{i}_{side}": moment for i, span in enumerate(ranges) for side, moment in zip(("from", "to"),
                                                                                                     span, strict=True)}
        where = " OR ".join(f"(timestamp >= {{rest_{i}_from:DateTime64(3, 'UTC')}} AND "
                            f"timestamp < {{rest_{i}_to:DateTime64(3, 'UTC')}})" for i in range(len(ranges)))
        pages = ("entry_page", "exit_page") if spec.by else ("arrayMap(x -> '', first_ms)",) * 2
        per_group = fill(self.pieces["per_page"], group=spec.by) if spec.by else self.pieces["totals"]
        sql = fill(self.pieces["metrics"], entry=pages[0], exit=pages[1], per_group=per_group,
                   spread=self.pieces["per_page_spread"] if spec.by else "",
                   pages=self.pieces["session_pages" if spec.by else "no_pages"],
                   raw=fill(self.pieces["pieces"], events=fill(self.pieces["scan_rest"], ranges=where or "0")),
                   timeout_seconds=str(int(self.timeout_seconds)))
        table = self._run("hot", sql, {**params, **bounds, "built_hours": hours})
        rows = [r for r in table.to_pylist() if not r["long"]]
        long_users = sorted(r["grp"] for r in table.to_pylist() if r["long"])
        if long_users:  # chains of 24 hours or more are cut inside their pieces: these users' from the raw events
            rows += self._run("hot", self._hot_session_metrics(
                spec, keep="sid = '' AND user_id IN {long_users:Array(String)}"),
                {**params, "long_users": long_users}).to_pylist()
        return _sum_by_group(rows)

    def _hot_session_metrics(self, spec: SessionsSpec, keep: str = "1") -> str:
        """Totals need only each event's time and flags; entry and exit pages also the pages and the order
        of events on the same millisecond (by event id)."""
        if spec.by:
            name, order = "session_metrics_by_page", "(i, x, e) -> (x, e), arrayEnumerate(t0), t0, e0"
            collect = "groupArray(event_id) AS e0, groupArray(page) AS p0"
        else:
            name, order, collect = "session_metrics", "(i, x) -> x, arrayEnumerate(t0), t0", "emptyArrayString() AS p0"
        cuts = fill(self.ch["session_cuts"], order=order, collect=collect, scan=self.ch["scan"], keep=keep)
        return fill(self.ch[name], group=spec.by or "''", session_cuts=cuts,
                    timeout_seconds=str(int(self.timeout_seconds)))

    def retention(self, tenant: str, spec: RetentionSpec, now: datetime) -> Answer:
        started = time.perf_counter()
        engine = "hot" if spec.tier == "hot" else "lake"  # first-ever start events need the whole history
        ch_fn, duck_unit, diff_unit, per_unit = PERIOD_SQL[spec.period]
        reach = timedelta(days=(spec.periods + 1) * {"day": 1, "week": 7, "month": 31}[spec.period])
        scan_end = spec.end + reach
        # a profile property: the grid per user (value = user_id), each user's property looked up, added up below
        profiled = spec.breakdown is not None and is_profile_field(spec.breakdown)
        breakdown = "user_id" if profiled else spec.breakdown or "''"
        lake_end = self._recent_from(spec.tier, scan_end, now) if engine == "lake" else None
        params = self._params(tenant, spec.start, scan_end, start=spec.start, end=spec.end,
                              start_event=spec.start_event, return_event=spec.return_event, periods=spec.periods,
                              first_day=spec.start.date(), last_day=spec.end.date(), lake_end=lake_end or scan_end)
        sources, recent = [_source(engine)], {}
        if engine == "hot":
            indexes = ("arrayFilter(x -> x <= {periods:UInt32}, groupUniqArray(idx))" if spec.mode == "on"
                       else "[least(max(idx), {periods:UInt32})]")
            sql = fill(self.ch["retention"], breakdown=breakdown, period=ch_fn, unit=diff_unit,
                       per_unit=str(per_unit), mode_indexes=indexes, timeout_seconds=str(int(self.timeout_seconds)))
        else:
            if lake_end is not None:  # the hours the lake does not hold yet: the hot tier's rows, added in DuckDB
                recent["recent_events"] = self._run("hot", fill(
                    self.ch["retention_recent"], breakdown=breakdown,
                    timeout_seconds=str(int(self.timeout_seconds))), params)
                sources.append(_source("hot"))
            indexes = ("list_filter(list_distinct(list(idx)), x -> x <= $periods)" if spec.mode == "on"
                       else "[least(max(idx), $periods)]")
            sql = fill(self.duck["retention"], breakdown=breakdown, period=duck_unit, unit=diff_unit,
                       per_unit=str(per_unit), mode_indexes=indexes,
                       recent="UNION ALL " + self.duck["retention_recent"] if recent else "")
        table = self._run(engine, sql, params, recent)
        if profiled:
            assert spec.breakdown is not None
            values = self._profile_property(tenant, spec.breakdown)
            cells: dict[tuple, int] = {}
            for row in table.to_pylist():
                key = (row["cohort"], values.get(row["value"], ""), row["n"])
                cells[key] = cells.get(key, 0) + row["users"]
            table = pa.Table.from_pylist([{"cohort": c, "value": v, "n": n, "users": u}
                                          for (c, v, n), u in cells.items()])
        return Answer(retention_answer(spec, table), sources, _ms(started))

    def _recent_from(self, tier: str, scan_end: datetime, now: datetime) -> datetime | None:
        """Where the lake's part of an auto-routed retention ends and the hot tier's begins, or None when the lake
        holds the whole scan (or the hot tier cannot add anything: forced lake, no hot tier on this server, a scan
        ending before the hot tier's oldest hour).

        Read once, before either side is read, and used for both: an hour archived meanwhile is still taken from
        the hot tier only, so no event is counted twice and none is missed."""
        if tier != "auto" or self.store is None or scan_end <= now - self.hot_horizon:
            return None
        end = self.lake_end(self.settings)
        if end is None:
            return EPOCH  # an empty lake: every event is still in the hot tier
        return end if end < scan_end else None

    def _funnel_walk(self, engine: str, tenant: str, spec: FunnelSpec, scan_start: datetime, scan_end: datetime,
                     *, source: str, keep: str, units: bool = True) -> pa.Table:
        sections = self.ch if engine == "hot" else self.duck
        relation = sections["scan"]
        if source == "sessionized":
            relation = fill(sections["sessionized"], scan=relation)
        mask, mask_params = mask_sql(spec, engine)
        extra = {"timeout_seconds": str(int(self.timeout_seconds))} if engine == "hot" else {}
        common = {"unit": "session" if spec.unit == "sessions" else "''", "source": relation, "mask": mask,
                  "value": spec.breakdown or "''", **extra}
        params = self._params(
            tenant, scan_start, scan_end, events=spec.event_names, start=spec.start, end=spec.end,
            start_ms=int(spec.start.timestamp() * 1000), end_ms=int(spec.end.timestamp() * 1000),
            window_ms=int(spec.window.total_seconds() * 1000), **mask_params)
        if engine == "hot" and self.packed_funnel and packs(spec):
            return self._packed_funnel_walk(spec, keep, common, params, units=units or spec.unit == "sessions")
        sql = fill(sections["funnel_walk"], keep="true" if engine == "lake" and keep == "1" else keep,
                   **walk_parts(spec, engine), **common)
        return self._run(engine, sql, params)

    def _packed_funnel_walk(self, spec: FunnelSpec, keep: str, common: dict[str, str], params: dict[str, Any],
                            *, units: bool) -> pa.Table:
        """The hot funnel from packed events (no event ids carried or compared), then the units with ties on time
        walked again by ``funnel_walk`` sorting by event id: the users listed, or every unit when there are many
        (a parameter of hundreds of thousands of ids costs more than the walk). ``units``: every row's user id;
        without, only the tied rows' (the rest get ''; one row per user then, so no user has rows in both passes).
        By user, the closed hours' funnel pieces stand in for their raw events when the batch layer built them."""
        parts = {**common, **packed_parts(spec, on_packed=self.funnel_on_packed), "keep": keep,
                 "who": "user_id" if units else "if(tied, user_id, '')"}
        packed = self._packed_from_pieces(spec, parts, params) if spec.unit == "users" else None
        if packed is None:
            packed = self._run("hot", fill(self.ch["funnel_walk_packed"], **parts,
                                           grouped=fill(self.ch["funnel_packed_events"], **parts)), params)
        tied = pc.cast(packed["tied"], pa.bool_())
        if not pc.any(tied).as_py():
            return packed.drop_columns(["tied"])
        users = pc.unique(packed["user_id"].filter(tied))
        listed = f"({keep}) AND user_id IN {{tied_users:Array(String)}}"
        exact = fill(self.ch["funnel_walk"], **walk_parts(spec, "hot"), **common,
                     keep=keep if len(users) > TIED_USERS_LISTED else listed)
        walked = self._run("hot", exact, {**params, "tied_users": users.to_pylist()})
        if len(users) > TIED_USERS_LISTED:
            return walked
        answered = pc.invert(tied)
        if units:  # a user's other units (sessions) came back from the second pass too: all of theirs from there
            answered = pc.and_(answered, pc.invert(pc.is_in(packed["user_id"], value_set=users)))
        kept = packed.filter(answered).drop_columns(["tied"])
        return pa.concat_tables([kept, walked.cast(kept.schema)])

    def _packed_from_pieces(self, spec: FunnelSpec, parts: dict[str, str], params: dict[str, Any]
                            ) -> pa.Table | None:
        """``funnel_walk_packed`` over the funnel pieces of the scan's built hours and the raw events of its other
        hours (``common.session_pieces``), or None when no hour is built (or the pieces are off). As for the session
        metrics: the marks' version is read with the built hours and again after the pieces; when a restatement
        changed it meanwhile the question reads again (then from the raw events alone)."""
        if not self.use_funnel_pieces or self.store is None:
            return None
        scan_start, scan_end = params["scan_start"], params["scan_end"]
        fields = ["event", *sorted({f.field for step in spec.steps for f in step.filters}
                                   | ({spec.breakdown} if spec.breakdown else set()))]
        listed = ", ".join(fields)
        if spec.breakdown:
            values = {"values": f", arrayMap(({listed}) -> {parts['value']}, {listed}) AS values",
                      "piece_value_list": f"arrayFilter((v, mask) -> {parts['mask_keep']}, values, masks)",
                      "piece_values": "groupArrayArray(vs)"}
        else:
            values = {"values": "", "piece_value_list": "emptyArrayString()", "piece_values": "emptyArrayString()"}
        for _ in range(PIECES_ATTEMPTS):
            hours, version = session_pieces.funnel_hours(self.store, scan_start, scan_end)
            if not hours:
                return None
            ranges = session_pieces.raw_ranges(scan_start, scan_end, hours)
            bounds = {f"rest_{i}_{side}": moment for i, span in enumerate(ranges)
                      for side, moment in zip(("from", "to"), span, strict=True)}
            where = " OR ".join(f"(timestamp >= {{rest_{i}_from:DateTime64(3, 'UTC')}} AND "
                                f"timestamp < {{rest_{i}_to:DateTime64(3, 'UTC')}})" for i in range(len(ranges)))
            grouped = fill(self.ch["funnel_packed_pieces"], **parts, **values, fields=listed, ranges=where or "0")
            table = self._run("hot", fill(self.ch["funnel_walk_packed"], **parts, grouped=grouped),
                              {**params, **bounds, "built_hours": hours})
            if session_pieces.marks_version(self.store, scan_start, scan_end) == version:
                return table
            # an hour of the range was restated meanwhile: its pieces may have been missing when they were read
        return None

    def _profile_property(self, tenant: str, field: str) -> dict[str, str]:
        if self.profiles is None:
            raise QueryError("user profiles are not available on this server")
        return self.profiles.property(tenant, property_of(field))

    # ------------------------------------------------------------------------------------------ plumbing

    def _units(self, engine: str, tenant: str, scan_start: datetime, scan_end: datetime, *, source: str, keep: str,
               unit: str, **values: Any) -> pa.Table:
        sections = self.ch if engine == "hot" else self.duck
        relation = sections["scan"]
        if source == "sessionized":
            relation = fill(sections["sessionized"], scan=relation)
        text = sections["unit_events"]
        if engine == "hot":
            sql = fill(text, unit=unit, source=relation, keep=keep, timeout_seconds=str(int(self.timeout_seconds)))
        else:
            sql = fill(text, unit=unit, source=relation, keep="true" if keep == "1" else keep)
        return self._run(engine, sql, self._params(tenant, scan_start, scan_end, **values))

    def _params(self, tenant: str, scan_start: datetime, scan_end: datetime, **values: Any) -> dict[str, Any]:
        return {"tenant": tenant, "scan_start": scan_start, "scan_end": scan_end, "gap_ms": self.gap_ms,
                "scan_first_day": scan_start.date(), "scan_last_day": scan_end.date(), **values}

    def _run(self, engine: str, sql: str, params: dict[str, Any], tables: dict[str, pa.Table] | None = None
             ) -> pa.Table:
        """``tables``: Arrow tables the lake's SQL reads by name (rows another engine supplied)."""
        if engine == "hot":
            if self.store is None:
                raise QueryError("this server has no hot tier; ask for tier=lake")
            used = {k: _naive_utc(v) for k, v in params.items() if k in set(_CH_PARAM.findall(sql))}
            try:
                return self.store.query_arrow(sql, used)
            except Exception as exc:
                if "TIMEOUT_EXCEEDED" in str(exc):
                    raise QueryTimeout(f"the query ran longer than {self.timeout_seconds:g} s") from exc
                raise
        used = {k: v for k, v in params.items() if k in set(_DUCK_PARAM.findall(sql))}
        con = self.lake_factory(self.settings)
        try:
            for name, table in (tables or {}).items():
                con.register(name, table)
            return con.execute(sql, used).to_arrow_table()
        finally:
            con.close()


def _naive_utc(value: Any) -> Any:
    """ClickHouse parameters carry no zone: datetimes go as naive UTC (the columns are UTC)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


SESSION_MEASURES = ("sessions", "total_duration_ms", "total_views", "with_views", "bounced")


def _sum_by_group(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of session metrics added up per group, largest first (as the raw events' query orders them)."""
    sums: dict[str, dict[str, int]] = {}
    for row in rows:
        into = sums.setdefault(row["grp"], dict.fromkeys(SESSION_MEASURES, 0))
        for measure in SESSION_MEASURES:
            into[measure] += int(row[measure] or 0)
    ordered = sorted(sums.items(), key=lambda kv: (-kv[1]["sessions"], kv[0]))
    return pa.Table.from_pylist([{"grp": g, **m} for g, m in ordered], schema=pa.schema(
        [("grp", pa.string())] + [(m, pa.int64()) for m in SESSION_MEASURES]))


def _source(engine: str) -> str:
    return "hot:events_raw" if engine == "hot" else "lake:events"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
