"""The warm/cold query backend of the API: metric series from the Parquet rollups with DuckDB.

The query engine hands a ``TierQuery`` (tenant, dataset, measure, event, range, bucket, group-by,
filters) to ``ColdQueryBackend.query`` and gets a ``pyarrow.Table`` with ``bucket`` (UInt32 epoch
seconds, UTC), the group columns in the order asked, and ``value``:

* ``rollups_hourly`` (warm, hour rows) or ``rollups_daily`` (cold, day rows) — the views of
  ``storage_tiers.lake_sql``; ``bucket_seconds`` must be a multiple of the dataset's row period
  (a rollup row cannot be split), buckets are floored from the Unix epoch like ClickHouse's
  ``toStartOfInterval``, and a row counts when its period starts in ``[start, end)``.
* measures: ``events`` (sum of counts, UInt64), ``revenue`` (sum, float64), ``users`` (exact
  ``count(DISTINCT)`` over the rows' unnested ``user_ids``, UInt64).
* filters ``(dimension, op, value)`` with op ``=``, ``!=`` (one string) or ``in`` (a non-empty list of
  strings), all ANDed; dimensions ``event``, ``country``, ``device``, ``page``. A missing dimension reads
  as ``''``, as in the hot tier.

Only whitelisted names reach the SQL text (``sql/duckdb/cold_series.sql``); every value is a DuckDB
prepared-statement parameter. The backend hands the dataset's table macro (``lake_rollups_hourly``,
``lake_rollups_daily`` in ``sql/duckdb/views.sql``: the views' columns) only globs narrowed to the
range's days, one per month, listed first to drop the empty ones (listings are reused for
``refresh_seconds``). The views' glob would list every partition of the dataset on every query, which
on S3 costs more than the query itself (``bench/lake_sql.py``). A bad query raises ``TierQueryError``
naming what is accepted; a range without files is an empty table with the same columns.

Thread safety: one DuckDB database per backend (built by ``connection_factory``, by default
``lake_connection``), and one cursor per thread on it (a DuckDB connection must not be shared by
threads running queries; cursors share the macros, the loaded httpfs and the S3 secret).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from common.settings import Settings
from storage_tiers.lake_sql import (
    COLD_ROLLUPS_DAILY,
    WARM_ROLLUPS_HOURLY,
    TierSource,
    duckdb_uri,
    lake_connection,
    sql_text,
)

DIMENSIONS = ("event", "country", "device", "page")
FILTER_OPS = ("=", "!=", "in")
MAX_MONTH_GLOBS = 3  # a range over more months is read through one glob of their common prefix


@dataclass(frozen=True)
class _Dataset:
    time_column: str
    row_seconds: int
    source: TierSource  # its folder and glob
    relation: str  # the table macro of views.sql over the globs of the range


DATASETS = {
    "rollups_hourly": _Dataset("hour", 3600, WARM_ROLLUPS_HOURLY, "lake_rollups_hourly($files)"),
    "rollups_daily": _Dataset("day", 86400, COLD_ROLLUPS_DAILY, "lake_rollups_daily($files)"),
}


@dataclass(frozen=True)
class _Measure:
    input: str  # per rollup row (or per unnested user id)
    aggregate: str  # over the inputs of a bucket and group


MEASURES = {
    "events": _Measure("events", "CAST(sum(measure) AS UBIGINT)"),
    "revenue": _Measure("revenue", "CAST(sum(measure) AS DOUBLE)"),
    "users": _Measure("unnest(user_ids)", "CAST(count(DISTINCT measure) AS UBIGINT)"),
}


class TierQueryError(ValueError):
    """The query cannot be answered as asked; the message says what is accepted."""


@dataclass(frozen=True)
class TierQuery:
    """One metric series over a Parquet tier. ``start``/``end`` are instants (naive means UTC)."""

    tenant: str
    dataset: str  # "rollups_hourly" | "rollups_daily"
    measure: str  # "events" | "revenue" | "users"
    event: str | None
    start: datetime
    end: datetime
    bucket_seconds: int
    group_by: Sequence[str] = field(default_factory=tuple)
    filters: Sequence[tuple[str, str, str | Sequence[str]]] = field(default_factory=tuple)


def _utc(instant: datetime) -> datetime:
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def compile_query(spec: TierQuery) -> tuple[str, dict[str, Any]]:
    """SQL text (whitelisted names only) and its parameters; raises ``TierQueryError`` on a bad spec.

    The statement reads ``$files``, globs of the range's partitions (``ColdQueryBackend.files``); the
    other parameters are in the returned dict.
    """
    if spec.dataset not in DATASETS:
        raise TierQueryError(f"unknown dataset {spec.dataset!r}; known: {', '.join(DATASETS)}")
    if spec.measure not in MEASURES:
        raise TierQueryError(f"unknown measure {spec.measure!r}; known: {', '.join(MEASURES)}")
    if not isinstance(spec.tenant, str) or not spec.tenant:
        raise TierQueryError("tenant must be a non-empty string")
    if spec.event is not None and not isinstance(spec.event, str):
        raise TierQueryError("event must be a string or None")
    dataset, measure = DATASETS[spec.dataset], MEASURES[spec.measure]
    if (not isinstance(spec.bucket_seconds, int) or spec.bucket_seconds <= 0
            or spec.bucket_seconds % dataset.row_seconds):
        raise TierQueryError(
            f"bucket_seconds {spec.bucket_seconds!r} must be a positive multiple of {dataset.row_seconds} "
            f"for {spec.dataset} (its rows cover {dataset.row_seconds} s each)")
    start, end = _utc(spec.start), _utc(spec.end)
    if start >= end:
        raise TierQueryError("the range is empty: start must be before end")
    group_by = list(spec.group_by)
    for dim in group_by:
        if dim not in DIMENSIONS:
            raise TierQueryError(f"unknown dimension {dim!r} in group_by; known: {', '.join(DIMENSIONS)}")
    if len(set(group_by)) != len(group_by):
        raise TierQueryError(f"group_by {group_by} repeats a dimension")
    params: dict[str, Any] = {
        "tenant": spec.tenant, "bucket_seconds": spec.bucket_seconds, "start": start, "end": end,
        "first_day": start.date(), "last_day": _last_day(end),
    }
    conditions = []
    if spec.event is not None:
        conditions.append("AND event = $event")
        params["event"] = spec.event
    for n, item in enumerate(spec.filters):
        conditions.append(_condition(item, f"f{n}", params))
    sql = (
        sql_text("cold_series.sql")
        .replace("{group_columns}", "".join(f"{d}, " for d in group_by))
        .replace("{aggregate}", measure.aggregate)
        .replace("{time_column}", dataset.time_column)
        .replace("{dimension_columns}", "".join(f"coalesce({d}, '') AS {d}, " for d in group_by))
        .replace("{measure_input}", measure.input)
        .replace("{dataset}", dataset.relation)
        .replace("{conditions}", "\n      ".join(conditions))
        .replace("{group_by}", "".join(f", {d}" for d in group_by))
    )
    return sql, params


def _last_day(end: datetime) -> date:
    """The last UTC day holding an instant before ``end`` (the range is half-open)."""
    return (end - timedelta(microseconds=1)).date()


def _condition(item: Any, name: str, params: dict[str, Any]) -> str:
    try:
        dim, op, value = item
    except (TypeError, ValueError):
        raise TierQueryError(f"filter {item!r} is not (dimension, op, value), e.g. ('device', '=', 'mobile')") from None
    if dim not in DIMENSIONS:
        raise TierQueryError(f"unknown dimension {dim!r} in filter; known: {', '.join(DIMENSIONS)}")
    if op not in FILTER_OPS:
        raise TierQueryError(f"unknown filter operator {op!r}; known: {', '.join(FILTER_OPS)}")
    column = f"coalesce({dim}, '')"
    if op == "in":
        if isinstance(value, str) or not isinstance(value, Sequence) or not value:
            raise TierQueryError(f"filter ({dim!r}, 'in', …) needs a non-empty list of strings")
        if not all(isinstance(v, str) for v in value):
            raise TierQueryError(f"filter ({dim!r}, 'in', …) values must be strings")
        params[name] = list(value)
        return f"AND list_contains(${name}, {column})"
    if not isinstance(value, str):
        raise TierQueryError(f"filter ({dim!r}, {op!r}, …) needs one string value")
    params[name] = value
    return f"AND {column} {op} ${name}"


class ColdQueryBackend:
    """Answers ``TierQuery``s from the lake's Parquet rollups; safe to call from many threads."""

    def __init__(
        self,
        settings: Settings,
        connection_factory: Callable[[Settings], duckdb.DuckDBPyConnection] = lake_connection,
        refresh_seconds: float = 60.0,
    ) -> None:
        self.settings = settings
        self._factory = connection_factory
        self._refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._base: duckdb.DuckDBPyConnection | None = None
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._listings: dict[str, tuple[float, list[str]]] = {}  # glob -> (listed at, files)

    def query(self, spec: TierQuery) -> pa.Table:
        """The series of ``spec``: columns ``bucket`` (uint32), the group columns, ``value``."""
        sql, params = compile_query(spec)
        for attempt in (1, 2):
            files = self.files(spec, fresh=attempt == 2)
            if not files:
                return _empty(spec)
            try:
                return self._cursor().execute(sql, {**params, "files": files}).to_arrow_table()
            except duckdb.IOException:
                if attempt == 2:
                    raise
                # files listed earlier are gone (a mover or retention deleted them): list again, once
        raise AssertionError("unreachable")

    def explain(self, spec: TierQuery) -> str:
        """DuckDB's EXPLAIN ANALYZE of the query (shows the files each scan read)."""
        sql, params = compile_query(spec)
        files = self.files(spec)
        if not files:
            return "no files in the range"
        rows = self._cursor().execute("EXPLAIN ANALYZE " + sql, {**params, "files": files}).fetchall()
        return "\n".join(row[1] for row in rows)

    def files(self, spec: TierQuery, fresh: bool = False) -> list[str]:
        """What the statement reads for the spec's days: the narrowest globs that hold them.

        One glob per month of the range, narrowed to the days it covers (``dt=2026-11-12/…`` for one
        day, ``dt=2026-11-0*/…`` for days 01–09), kept only if its listing has files in the range (a
        glob without files is an error in DuckDB). Globs rather than file names: DuckDB takes the
        sizes from the listing, where each named S3 file would cost a HEAD request. Listings are
        reused for ``refresh_seconds``: dashboards ask for the same months again and again.
        """
        _sql, params = compile_query(spec)
        first, last = params["first_day"], params["last_day"]
        globs = []
        for pattern in _range_globs(DATASETS[spec.dataset].source, self.settings, first, last):
            for path in self._list(pattern, fresh):
                match = _DT_FOLDER.search(path)
                if match and first <= date.fromisoformat(match[1]) <= last:
                    globs.append(pattern)
                    break
        return globs

    def close(self) -> None:
        with self._lock:
            for cursor in self._cursors:
                cursor.close()
            self._cursors.clear()
            if self._base is not None:
                self._base.close()
                self._base = None

    def _list(self, pattern: str, fresh: bool) -> list[str]:
        now = time.monotonic()
        cached = self._listings.get(pattern)
        if cached is not None and not fresh and now - cached[0] < self._refresh_seconds:
            return cached[1]
        files = [row[0] for row in self._cursor().execute("SELECT file FROM glob($p) ORDER BY file",
                                                          {"p": pattern}).fetchall()]
        self._listings[pattern] = (now, files)
        return files

    # One database with the lake's macros and views; each thread gets its own cursor on it.
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is not None and getattr(self._local, "base", None) is self._base:
            return cursor
        with self._lock:
            if self._base is None:
                self._base = self._factory(self.settings)
            base = self._base
            cursor = base.cursor()
            self._cursors.append(cursor)
        cursor.execute("SET TimeZone = 'UTC'")  # a session setting: each cursor needs it
        self._local.cursor, self._local.base = cursor, base
        return cursor


_DT_FOLDER = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/")


def _range_globs(source: TierSource, settings: Settings, first: date, last: date) -> list[str]:
    """Per month of ``[first, last]``: ``<root>/dt=YYYY-MM-<common prefix of its first and last day>*/…``;
    one glob of the dates' common prefix for a range over more than ``MAX_MONTH_GLOBS`` months.

    DuckDB lists a glob from its fixed prefix, so these list only (about) the range's days, where the
    dataset's glob would list every partition of seven years on every query.
    """
    below = source.pattern.split("/", 1)[1]
    root = duckdb_uri(source.root(settings))
    if (last.year - first.year) * 12 + last.month - first.month >= MAX_MONTH_GLOBS:
        # A wide range reads most of what it lists anyway: one glob (few paged listings) beats a
        # listing per month (measured: a year of daily files on MinIO, 13 month globs ~2x slower).
        return [f"{root}/dt={os.path.commonprefix([first.isoformat(), last.isoformat()])}*/{below}"]
    globs = []
    month = date(first.year, first.month, 1)
    while month <= last:
        following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        lo, hi = max(first, month), min(last, following - timedelta(days=1))
        a, b = f"{lo.day:02d}", f"{hi.day:02d}"
        days = a if a == b else os.path.commonprefix([a, b]) + "*"
        globs.append(f"{root}/dt={month:%Y-%m}-{days}/{below}")
        month = following
    return globs


def _empty(spec: TierQuery) -> pa.Table:
    value = pa.float64() if spec.measure == "revenue" else pa.uint64()
    fields = [("bucket", pa.uint32()), *((d, pa.string()) for d in spec.group_by), ("value", value)]
    return pa.Table.from_pylist([], schema=pa.schema(fields))
