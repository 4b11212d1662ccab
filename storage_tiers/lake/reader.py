"""How the API reads the warm and cold rollups: only the range's files, one cursor per thread.

``serving/query/sql_compile.py`` writes every dashboard statement; this module gives it what to read and runs it.

* ``LakeRollupReader.relation(dataset, start, end)`` is the FROM text and its parameter for
  ``rollups_hourly`` (warm) or ``rollups_daily`` (cold) over ``[start, end)``: the dataset's table macro
  of ``sql/duckdb/views.sql`` (``lake_rollups_hourly($lake_files)``, ``lake_rollups_daily($lake_files)``:
  the views' columns; ``day_sketches``: ``lake_day_sketches($lake_files)``)
  with ``$lake_files`` = the range's live files from the Delta table's log (warm
  ``rollups_hourly``, cold ``rollups_daily``), or an empty relation of the same columns when the range has
  no file. Why not the views: DuckDB lists a view's glob on
  every query, and a year of hourly folders takes longer to list than to query (``bench/lake_sql.py``:
  ~850 ms on MinIO for a one-day series over the view, ~20 ms through the narrowed macro).
* ``LakeRollupReader.execute(sql, params, timeout_seconds)`` runs a statement on this thread's cursor and
  returns Arrow; past the timeout the cursor is interrupted and ``LakeQueryTimeout`` raised.

The tables' files: each table is opened once and brought up to date (``update_incremental``: only
the commits since) at most every ``listing_seconds``; a day range keeps the files whose ``dt`` partition
is in it, from the log's add actions, so no folder is listed (measured in ``bench/lake_sql.py``).

``range_globs`` narrows a Hive folder layout without a table log (none of the datasets here since the cold
tier became tables; kept for folders outside the tables): one glob per month of the range, narrowed to the
days it covers (``dt=2026-11-12/…`` for one day, ``dt=2026-11-0*/…`` for days 01–09), one glob of the dates'
common prefix for a range over more than ``MAX_MONTH_GLOBS`` months. A file listed for a statement that
vanished since (vacuum after a mover or a purge) raises ``LakeFilesChanged``: ask again
(``relation(..., fresh=True)``) and retry once.

``LAKEHOUSE_LAKE_METADATA_CACHE`` (off by default) keeps the Parquet footers of the files read in the reader's
database, so a statement over files read before skips re-reading their metadata.

Thread safety: one DuckDB database per reader (built by ``connection_factory``, by default
``lake_connection``), and one cursor per thread on it (a DuckDB connection must not be shared by threads
running queries; cursors share the macros, the loaded httpfs and the S3 secret).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from common.lake_duckdb import duckdb_uri
from common.lake_tables import open_table, partition_files
from common.settings import Settings
from storage_tiers.lake.sql import (
    COLD_ROLLUPS_DAILY,
    DAY_SKETCHES,
    MONTH_SKETCHES,
    WARM_ROLLUPS_HOURLY,
    TierSource,
    lake_connection,
)

MAX_MONTH_GLOBS = 3  # a range over more months is read through one glob of their common prefix
MAX_LISTINGS = 1024  # listings kept before stale ones are dropped
FILES_PARAMETER = "lake_files"
DATASETS: dict[str, TierSource] = {"rollups_hourly": WARM_ROLLUPS_HOURLY, "rollups_daily": COLD_ROLLUPS_DAILY,
                                   "day_sketches": DAY_SKETCHES, "month_sketches": MONTH_SKETCHES}
_DT_FOLDER = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/")


class LakeQueryTimeout(TimeoutError):
    """The statement ran past its timeout and was interrupted."""


class LakeFilesChanged(RuntimeError):
    """Files listed for the statement are gone; ask for the relation again with ``fresh=True``."""


class LakeRollupReader:
    """Narrowed relations over the lake's rollups and a per-thread executor; safe to call from many threads."""

    def __init__(
        self,
        settings: Settings,
        connection_factory: Callable[[Settings], duckdb.DuckDBPyConnection] = lake_connection,
        listing_seconds: float = 60.0,
    ) -> None:
        self.settings = settings
        self._factory = connection_factory
        self.listing_seconds = listing_seconds
        self._lock = threading.Lock()
        self._base: duckdb.DuckDBPyConnection | None = None
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._listings: dict[str, tuple[float, list[str]]] = {}  # glob -> (listed at, files)
        self._tables: dict[str, tuple[float, Any]] = {}  # dataset -> (refreshed at, DeltaTable)
        self._stale: tuple[tuple[Any, ...], list[date]] | None = None  # (versions, stale sketch days)
        self._months: tuple[tuple[Any, ...], set[str]] | None = None  # (versions, current month sketches)

    def relation(
        self, dataset: str, start: datetime, end: datetime, *, fresh: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """FROM text for ``dataset`` over ``[start, end)`` and its parameters (names we listed, never user text)."""
        globs = self.files(dataset, start, end, fresh=fresh)
        if not globs:
            return DATASETS[dataset].empty(), {}
        return DATASETS[dataset].over(f"${FILES_PARAMETER}"), {FILES_PARAMETER: globs}

    def files(self, dataset: str, start: datetime, end: datetime, *, fresh: bool = False) -> list[str]:
        """The range's live files of a Delta dataset, or the narrowest globs holding a cold dataset's folders of
        ``[start, end)`` that have a file in the range."""
        if dataset not in DATASETS:
            raise ValueError(f"unknown lake dataset {dataset!r}; known: {', '.join(DATASETS)}")
        first, last = day_range(start, end)
        source = DATASETS[dataset]
        if source.table is not None:
            delta = self._table(dataset, fresh)
            if delta is None:
                return []
            return [duckdb_uri(f) for f in partition_files(self.settings, source.table, days=(first, last),
                                                           delta=delta)]
        globs = []
        for pattern in range_globs(DATASETS[dataset], self.settings, first, last):
            for path in self._list(pattern, fresh):
                match = _DT_FOLDER.search(path)
                if match and first <= date.fromisoformat(match[1]) <= last:
                    globs.append(pattern)
                    break
        return globs

    def relation_of_days(self, dataset: str, ranges: list[tuple[date, date]], *,
                         fresh: bool = False) -> tuple[str, dict[str, Any]]:
        """FROM text for ``dataset`` over several day ranges (inclusive first and last days): the live files holding
        any of them, each once."""
        source = DATASETS[dataset]
        delta = self._table(dataset, fresh) if source.table is not None else None
        if delta is None or not ranges:
            return source.empty(), {}
        assert source.table is not None
        files = sorted({duckdb_uri(f) for lo, hi in ranges
                        for f in partition_files(self.settings, source.table, days=(lo, hi), delta=delta)})
        if not files:
            return source.empty(), {}
        return source.over(f"${FILES_PARAMETER}"), {FILES_PARAMETER: files}

    def month_relation(self, months: list[str], *, fresh: bool = False) -> tuple[str, dict[str, Any]]:
        """FROM text for the month sketches of ``months`` (``YYYY-MM``) and its parameters (``$month_files``)."""
        delta = self._table("month_sketches", fresh)
        if delta is None or not months:
            return MONTH_SKETCHES.empty(), {}
        from common.lake_tables import add_actions, table_uri

        actions = add_actions(delta)
        root = table_uri(self.settings, MONTH_SKETCHES.table).rstrip("/")  # type: ignore[arg-type]
        wanted = set(months)
        files = sorted(duckdb_uri(p if "://" in p or p.startswith("/") else f"{root}/{p}")
                       for p, m in zip(actions["path"].to_pylist(), actions["partition.month"].to_pylist(),
                                       strict=True) if m in wanted)
        if not files:
            return MONTH_SKETCHES.empty(), {}
        return MONTH_SKETCHES.over("$month_files"), {"month_files": files}

    def current_sketch_months(self, *, fresh: bool = False) -> set[str]:
        """The months whose month sketches may be read (``storage_tiers.tiers.month_sketches.current_months``, from the
        two tables' logs; kept per pair of versions)."""
        from storage_tiers.tiers.month_sketches import current_months

        tables = [self._table(name, fresh) for name in ("day_sketches", "month_sketches")]
        key = tuple(t.version() if t is not None else None for t in tables)
        with self._lock:
            cached = self._months if self._months is not None and self._months[0] == key else None
        if cached is None:
            cached = (key, current_months(tables[0], tables[1]))
            with self._lock:
                self._months = cached
        return cached[1]

    def stale_sketch_days(self, start: datetime, end: datetime, *, fresh: bool = False) -> list[date]:
        """The days of ``[start, end)`` the daily rollups hold whose day sketches are missing or older than them
        (``storage_tiers.tiers.day_sketches.stale_days``, from the two tables' logs; kept per pair of versions): an
        answer must not read the day sketches over such a day."""
        from storage_tiers.tiers.day_sketches import stale_days

        tables = [self._table(name, fresh) for name in ("day_sketches", "rollups_daily", "rollups_hourly")]
        key = tuple(t.version() if t is not None else None for t in tables)
        with self._lock:
            cached = self._stale if self._stale is not None and self._stale[0] == key else None
        if cached is None:
            cached = (key, stale_days(tables[0], tables[1], warm=tables[2]))
            with self._lock:
                self._stale = cached
        first, last = day_range(start, end)
        return [d for d in cached[1] if first <= d <= last]

    def execute(self, sql: str, params: dict[str, Any], timeout_seconds: float) -> pa.Table:
        """Run ``sql`` on this thread's cursor; interrupted (``LakeQueryTimeout``) past ``timeout_seconds``."""
        cursor = self._cursor()
        timer = threading.Timer(timeout_seconds, cursor.interrupt)
        timer.start()
        try:
            return cursor.execute(sql, params).to_arrow_table()
        except duckdb.InterruptException:
            raise LakeQueryTimeout(f"the query ran longer than {timeout_seconds:g} s and was cancelled") from None
        except duckdb.IOException as exc:
            if "No files found" in str(exc) and (FILES_PARAMETER in params or "month_files" in params):
                raise LakeFilesChanged(str(exc)) from exc
            raise
        finally:
            timer.cancel()

    def explain(self, sql: str, params: dict[str, Any]) -> str:
        """DuckDB's EXPLAIN ANALYZE of a statement (``Total Files Read`` shows what each scan opened)."""
        rows = self._cursor().execute("EXPLAIN ANALYZE " + sql, params).fetchall()
        return "\n".join(row[1] for row in rows)

    def close(self) -> None:
        with self._lock:
            for cursor in self._cursors:
                cursor.close()
            self._cursors.clear()
            if self._base is not None:
                self._base.close()
                self._base = None

    def _table(self, dataset: str, fresh: bool) -> Any:
        """The dataset's DeltaTable, brought up to date at most every ``listing_seconds`` (or now if ``fresh``)."""
        now = time.monotonic()
        with self._lock:
            cached = self._tables.get(dataset)
            if cached is not None and cached[1] is not None and not fresh and now - cached[0] < self.listing_seconds:
                return cached[1]
            table = DATASETS[dataset].table
            assert table is not None
            if cached is not None and cached[1] is not None:
                cached[1].update_incremental()
                delta = cached[1]
            else:
                delta = open_table(self.settings, table)
            self._tables[dataset] = (now, delta)
            return delta

    def _list(self, pattern: str, fresh: bool) -> list[str]:
        now = time.monotonic()
        cached = self._listings.get(pattern)
        if cached is not None and not fresh and now - cached[0] < self.listing_seconds:
            return cached[1]
        files = [row[0] for row in self._cursor().execute("SELECT file FROM glob($p) ORDER BY file",
                                                          {"p": pattern}).fetchall()]
        if len(self._listings) > MAX_LISTINGS:  # rolling ranges keep making new patterns: forget stale ones
            for stale in [k for k, (at, _files) in list(self._listings.items()) if now - at >= self.listing_seconds]:
                self._listings.pop(stale, None)
        self._listings[pattern] = (now, files)
        return files

    # One database with the lake's macros; each thread gets its own cursor on it.
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is not None and getattr(self._local, "base", None) is self._base:
            return cursor
        with self._lock:
            if self._base is None:
                self._base = self._factory(self.settings)
                if self.settings.lake_metadata_cache:
                    # the files' footers kept between statements (a Delta table's files never change once written):
                    # a 7-year series over 2,557 day files opens them at half the cost
                    self._base.execute("SET parquet_metadata_cache = true")
            base = self._base
            cursor = base.cursor()
            self._cursors.append(cursor)
        cursor.execute("SET TimeZone = 'UTC'")  # a session setting: each cursor needs it
        self._local.cursor, self._local.base = cursor, base
        return cursor


def day_range(start: datetime, end: datetime) -> tuple[date, date]:
    """The first and last UTC day holding an instant of ``[start, end)`` (naive means UTC)."""
    start, end = (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC) for t in (start, end))
    return start.date(), (end - timedelta(microseconds=1)).date()


def range_globs(source: TierSource, settings: Settings, first: date, last: date) -> list[str]:
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
