"""DuckDB over the whole lake: one session setup, ready views, and the helpers data scientists call.

``lake_connection(settings)`` is an in-memory DuckDB session in UTC that reaches the lake where it is
(a local folder, or S3/MinIO through the ``httpfs`` extension shipped by the ``duckdb-extension-httpfs``
wheel: loaded by path, never downloaded) with these views (``sql/duckdb/views.sql``):

* ``events``: every raw event once, warm (the archive's Delta table, ``archive/events``) and cold
  (the cold events' Delta table, ``cold/events``, partitioned by ``dt``), columns of
  ``common.events.EVENT_ARROW_SCHEMA`` plus ``dt`` (DATE) and ``hour`` (INTEGER, 0-23). A day the cold
  table holds is read from the cold tier only; every other day from the archive. So a day being moved
  (cold committed, warm not yet deleted) is counted once, and a filter on ``dt`` still prunes the files
  of both tiers.
* ``rollups_hourly``: the warm hourly rollups' Delta table, ``hour`` (TIMESTAMPTZ, the hour's start), ``dt``
  and ``hour_of_day`` (its partition columns).
* ``rollups_daily``: the cold daily rollups' Delta table (``cold/rollups_daily``), ``day`` (TIMESTAMPTZ, UTC
  midnight) and ``dt``. Days not built yet are simply absent.
* ``day_sketches``: per tenant, UTC day and dimension value, exact events, revenue and users and a mergeable
  sketch of the users (``cold/day_sketches``, ``storage_tiers.tiers.day_sketches``; ``common.sketches`` merges them).

The Delta tables are read through their log, never a folder listing: the live files of the table's
version (``common.lake_tables.partition_files``) go to ``read_parquet`` with Hive partitioning, so a
filter on ``dt``/``hour`` still prunes files before they are opened, and a reader never sees an hour half
replaced. ``lake_connection(settings, as_of=…)`` builds the views over the tables as of a version number
or a timestamp (time travel): a timestamp applies to every table; a version number to the archive and the
warm hourly rollups (each table numbers its own versions), the cold tables being read as they are now.
A tier without any file yet is a view over an empty relation of the same columns, so every view always exists;
``create_views`` again (or a new connection) to see newer commits. ``lake_query(sql, settings)`` runs one
statement and returns Arrow.

The session itself (UTC, httpfs loaded from its wheel, the S3 secret) is ``common.lake_duckdb.lake_session``,
which ``batch.archive`` and the purge use too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from common.events import EVENT_ARROW_SCHEMA
from common.lake import (
    archive_path,
    cold_events_path,
    day_sketches_path,
    month_sketches_path,
    rollups_daily_path,
    rollups_hourly_path,
)
from common.lake_duckdb import duckdb_uri, lake_session, sql_literal
from common.lake_tables import (
    ARCHIVE_TABLE,
    COLD_EVENTS_TABLE,
    COLD_ROLLUPS_DAILY_TABLE,
    DAY_SKETCHES_TABLE,
    MONTH_SKETCHES_TABLE,
    ROLLUPS_HOURLY_TABLE,
    WarmTable,
    newest_partition_end,
    open_table,
    partition_files,
)
from common.settings import Settings
from common.sql_files import fill, sql_file

_ARROW_TO_DUCKDB = {pa.string(): "VARCHAR", pa.float64(): "DOUBLE"}
_DIMENSIONS = (("tenant", "VARCHAR"), ("event", "VARCHAR"), ("country", "VARCHAR"), ("device", "VARCHAR"),
               ("page", "VARCHAR"))
_MEASURES = (("events", "BIGINT"), ("revenue", "DOUBLE"), ("user_ids", "VARCHAR[]"))


def _duckdb_type(arrow_type: pa.DataType) -> str:
    return "TIMESTAMPTZ" if pa.types.is_timestamp(arrow_type) else _ARROW_TO_DUCKDB[arrow_type]


_RAW_COLUMNS = tuple((f.name, _duckdb_type(f.type)) for f in EVENT_ARROW_SCHEMA)


# -------------------------------------------------------------------------------------------- views


@dataclass(frozen=True)
class TierSource:
    """The data files of one dataset as a relation: its Hive glob, or an empty one of the same columns."""

    placeholder: str  # the {placeholder} in views.sql this relation fills
    root: Callable[[Settings], str]  # the dataset's folder (common.lake)
    pattern: str  # glob below the root: one ``*`` per Hive level, then the data files
    reader: str  # SQL of the relation over the ``{files}`` placeholder (a glob or a list of files)
    columns: tuple[tuple[str, str], ...]  # the relation's columns, for the empty relation
    table: WarmTable | None = None  # a Delta table: its files come from the log, never from a glob

    def glob(self, settings: Settings) -> str:
        return f"{duckdb_uri(self.root(settings))}/{self.pattern}"

    def over(self, files: str) -> str:
        """The relation over ``files``: a quoted glob, a list of quoted files, or a parameter (``$lake_files``)."""
        return fill(self.reader, files=files)

    def empty(self) -> str:
        """A relation with the columns and no rows, for a tier without files yet."""
        nulls = ", ".join(f'CAST(NULL AS {kind}) AS "{name}"' for name, kind in self.columns)
        return f"(SELECT {nulls} WHERE false)"


def _read_parquet(hive_types: str) -> str:
    return "read_parquet({files}, hive_partitioning = true, hive_types = " + hive_types + ")"


ARCHIVE_EVENTS = TierSource("archive_events", archive_path, "*/*/*.parquet",
                            _read_parquet("{'dt': DATE, 'hour': INTEGER}"),
                            (*_RAW_COLUMNS, ("dt", "DATE"), ("hour", "INTEGER")), ARCHIVE_TABLE)
COLD_EVENTS = TierSource("cold_events", cold_events_path, "*/*.parquet", _read_parquet("{'dt': DATE}"),
                         (*_RAW_COLUMNS, ("dt", "DATE")), COLD_EVENTS_TABLE)
# The rollups go through the table macros of views.sql (the same columns as the views).
WARM_ROLLUPS_HOURLY = TierSource("warm_rollups_hourly", rollups_hourly_path, "*/*/*.parquet",
                                 "lake_rollups_hourly({files})",
                                 (*_DIMENSIONS, ("hour", "TIMESTAMPTZ"), *_MEASURES, ("dt", "DATE"),
                                  ("hour_of_day", "INTEGER")), ROLLUPS_HOURLY_TABLE)
COLD_ROLLUPS_DAILY = TierSource("cold_rollups_daily", rollups_daily_path, "*/*.parquet",
                                "lake_rollups_daily({files})",
                                (*_DIMENSIONS, ("day", "TIMESTAMPTZ"), *_MEASURES, ("dt", "DATE")),
                                COLD_ROLLUPS_DAILY_TABLE)
DAY_SKETCHES = TierSource("day_sketches", day_sketches_path, "*/*.parquet", "lake_day_sketches({files})",
                          (("tenant", "VARCHAR"), ("dimension", "VARCHAR"), ("value", "VARCHAR"),
                           ("day", "TIMESTAMPTZ"), ("events", "BIGINT"), ("revenue", "DOUBLE"), ("users", "BIGINT"),
                           ("sketch", "BLOB"), ("dt", "DATE")), DAY_SKETCHES_TABLE)
# Read by the API only (no view: data scientists merge the day sketches): storage_tiers/tiers/month_sketches.py
MONTH_SKETCHES = TierSource("month_sketches", month_sketches_path, "*/*.parquet",
                            "(SELECT tenant, dimension, \"value\", \"day\", events, revenue, revenues, users, days, "
                            "sketch FROM read_parquet({files}, hive_partitioning = true))",
                            (("tenant", "VARCHAR"), ("dimension", "VARCHAR"), ("value", "VARCHAR"),
                             ("day", "TIMESTAMPTZ"), ("events", "BIGINT"), ("revenue", "DOUBLE"),
                             ("revenues", "DOUBLE[]"), ("users", "BIGINT"), ("days", "BIGINT"), ("sketch", "BLOB")),
                            MONTH_SKETCHES_TABLE)
SOURCES = (ARCHIVE_EVENTS, COLD_EVENTS, WARM_ROLLUPS_HOURLY, COLD_ROLLUPS_DAILY, DAY_SKETCHES)


def create_views(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: int | str | None = None) -> list[str]:
    """(Re)create the lake's views on ``con``; returns the placeholders of the tiers that had no file.

    Every relation reads the live files of its Delta table's newest version (or of the version ``as_of``
    names: a number or an ISO timestamp, see ``table_files``). A tier without any file becomes an empty
    relation. Views live in the session's catalog, so every ``con.cursor()`` sees them, and re-running this
    replaces them for all cursors at once.
    """
    files = {s.placeholder: table_files(settings, s.table, as_of) for s in SOURCES if s.table is not None}
    relations, empty = {}, []
    for source in SOURCES:
        if files.get(source.placeholder):
            relations[source.placeholder] = source.over(
                "[" + ", ".join(sql_literal(f) for f in files[source.placeholder]) + "]")
        else:
            relations[source.placeholder] = source.empty()
            empty.append(source.placeholder)
    con.execute(fill(sql_file("duckdb/views.sql"), **relations,
                     cold_event_days=days_relation(files.get(COLD_EVENTS.placeholder, []))))
    return empty


_DAY_IN_PATH = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/")


def days_relation(files: list[str]) -> str:
    """The distinct days (``dt``) of a day-partitioned table's files, as a relation with one DATE column ``dt``."""
    days = sorted({m[1] for m in (_DAY_IN_PATH.search(f) for f in files) if m})
    if not days:
        return "(SELECT CAST(NULL AS DATE) AS dt WHERE false)"
    return "(SELECT * FROM (VALUES " + ", ".join(f"(DATE '{d}')" for d in days) + ") AS days(dt))"


def table_files(settings: Settings, table: WarmTable, as_of: int | str | None = None) -> list[str]:
    """The live data files of a Delta table (as of a version or timestamp) as DuckDB spells them.

    A version number names a version of the warm tables; the cold tables follow a timestamp only (and are
    empty as of an instant before their first commit)."""
    version: int | str | None = as_of
    if isinstance(as_of, str) and as_of.strip().isdigit():
        version = int(as_of)
    if table.hour_column is None and as_of is not None:
        if isinstance(version, int):
            version = None
        else:
            try:
                delta = open_table(settings, table, version)
            except Exception:  # delta-rs' error for an instant it cannot place: no version of the table then
                return []
            if delta is None or _committed_after(settings, table, delta, str(version)):
                return []  # delta-rs loads the first version for an instant before it: the table did not exist
            return [duckdb_uri(f) for f in partition_files(settings, table, delta=delta)]
    delta = open_table(settings, table, version)
    if delta is None:
        if as_of is not None and table is ARCHIVE_TABLE:
            raise ValueError(f"no Delta table at {table.uri(settings)} to read as of {as_of}")
        return []
    return [duckdb_uri(f) for f in partition_files(settings, table, delta=delta)]


def _committed_after(settings: Settings, table: WarmTable, delta: Any, instant: str) -> bool:
    """Whether the loaded version was committed after ``instant`` (ISO; naive means UTC), from its commit file."""
    import json
    from datetime import UTC, datetime

    from common.lake import fs_path, lake_filesystem

    when = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
    path = f"{fs_path(table.uri(settings))}/_delta_log/{int(delta.version()):020d}.json"
    try:
        with lake_filesystem(settings).open_input_stream(path) as stream:
            lines = stream.read().decode("utf-8").splitlines()
    except FileNotFoundError:  # cleaned up past the log retention: older than anything time travel reaches
        return False
    for line in lines:
        info = json.loads(line).get("commitInfo") if line.strip() else None
        if info and info.get("timestamp") is not None:
            return datetime.fromtimestamp(info["timestamp"] / 1000, UTC) > when
    return False


def lake_events_end(settings: Settings) -> datetime | None:
    """Where the lake's raw events end: the end of the newest hour the archive holds (or of the newest cold day,
    while the archive has no file); None while the lake holds no event. From the tables' logs, no data read.

    The hourly archive writes hours in order once each is complete, so the lake holds every hour before this
    instant, and the hours from it on are still only in the hot tier."""
    ends = []
    for table in (ARCHIVE_TABLE, COLD_EVENTS_TABLE):
        delta = open_table(settings, table)
        end = newest_partition_end(delta, table) if delta is not None else None
        if end is not None:
            ends.append(end)
    return max(ends, default=None)


def lake_connection(settings: Settings, as_of: int | str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB session with the views ``events``, ``rollups_hourly`` and ``rollups_daily``.

    ``lake_connection(Settings()).sql("SELECT country, count(*) FROM events WHERE dt = DATE '2026-11-23'
    GROUP BY ALL").show()`` reads only that day's files, locally or on S3. ``as_of`` (a table version or
    an ISO timestamp) reads the Delta tables as they were then. Close it when done.
    """
    con = lake_session(settings)
    try:
        create_views(con, settings, as_of)
    except BaseException:
        con.close()
        raise
    return con


def lake_query(sql: str, settings: Settings, params: Sequence[Any] | Mapping[str, Any] | None = None,
               as_of: int | str | None = None) -> pa.Table:
    """Run one statement over the lake's views and return the result as an Arrow table.

    ``params`` are DuckDB prepared-statement parameters (``?`` or ``$name``), the way to pass values;
    ``as_of`` reads the Delta tables at a version or timestamp.
    """
    con = lake_connection(settings, as_of)
    try:
        return con.execute(sql, params).to_arrow_table()
    finally:
        con.close()


_FILES_READ = re.compile(r"Total Files Read:\s*(\d+)")


def files_read(con: duckdb.DuckDBPyConnection, sql: str,
               params: Sequence[Any] | Mapping[str, Any] | None = None) -> int:
    """How many Parquet files a query opens, summed over its scans (from DuckDB's EXPLAIN ANALYZE).

    The way to check that a filter on ``dt``/``hour`` prunes: the folders it excludes are never opened.
    """
    plan = "\n".join(row[1] for row in con.execute("EXPLAIN ANALYZE " + sql, params).fetchall())
    return sum(int(n) for n in _FILES_READ.findall(plan))
