"""Month sketches: each complete month's day sketches merged into one row per tenant and dimension value.

Why: a total over seven years by country read ~2,556 day rows per country (~51,000 sketches) and merged them in
Python; most of its 1.7 s was moving and merging them. A complete month never gains a day, so its day sketches can be
merged once: the total then merges ~84 month rows per value plus the days of the range's partial months.

The answers do not change. A row of ``cold/month_sketches`` (``MONTH_SKETCHES_SCHEMA``) holds the month's
``events`` (exact), ``revenues`` (each day's revenue: an answer adds all of them exactly, ``math.fsum``, as it adds
the day rows'), ``days`` (how many day rows were merged: one day's row answers its exact user count, as the day row
would) and ``sketch``, the merge of the days' sketches (``common.sketches.merge``: the register-wise maximum or the
union of exact sets, the same bytes in any grouping), so merging month rows gives the bytes merging the day rows gives.

When they are read (``current_months``): only for a month whose day sketches are ONE file (compacted) and whose
merge was built from that very file (``source``, a column constant in the merge's file, read from the log's per-file
statistics: no data read). Any later change of a day of the month (a rebuild, a purge) rewrites the month's file
under a new name, so its merge is stale at once, and a question reads that month's day rows until the movers merge it
again (``merge_months``, after each compaction). A retention purge also merges again each month it deleted day rows
from (``storage_tiers.tiers.purge``), so the purged tenants' rows leave the merges in the same run (held tenants kept,
as in the day rows), then vacuums the table.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from common.lake import fs_path, lake_filesystem
from common.lake_io import day_start, read_tables
from common.lake_tables import (
    DAY_SKETCHES_SCHEMA,
    DAY_SKETCHES_TABLE,
    MONTH_SKETCHES_SCHEMA,
    MONTH_SKETCHES_TABLE,
    add_actions,
    file_days,
    month_label,
    open_table,
    table_uri,
    write_month,
)
from common.settings import Settings
from common.sketches import estimate, merge

SOURCE_COLUMN = "source"


def month_rows(days: pa.Table, month: date, source: str) -> pa.Table:
    """The month's rows merged per (tenant, dimension, value), from its day sketch rows (``DAY_SKETCHES_SCHEMA``)."""
    if days.num_rows == 0:
        return MONTH_SKETCHES_SCHEMA.empty_table()
    days = days.sort_by([("tenant", "ascending"), ("dimension", "ascending"), ("value", "ascending"),
                         ("day", "ascending")])
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, key in enumerate(zip(days["tenant"].to_pylist(), days["dimension"].to_pylist(),
                                days["value"].to_pylist(), strict=True)):
        groups.setdefault(key, []).append(i)
    events, revenue, users, sketches = (days[c].to_pylist() for c in ("events", "revenue", "users", "sketch"))
    first = day_start(month.replace(day=1))
    out: dict[str, list[Any]] = {name: [] for name in MONTH_SKETCHES_SCHEMA.names}
    for (tenant, dimension, value), rows in groups.items():
        blob = merge([sketches[i] for i in rows])
        out["tenant"].append(tenant)
        out["dimension"].append(dimension)
        out["value"].append(value)
        out["day"].append(first)
        out["events"].append(sum(int(events[i]) for i in rows))
        out["revenues"].append([float(revenue[i]) for i in rows])
        out["revenue"].append(math.fsum(out["revenues"][-1]))
        out["users"].append(int(users[rows[0]]) if len(rows) == 1 else estimate(blob))
        out["days"].append(len(rows))
        out["sketch"].append(blob)
        out["source"].append(source)
    return pa.table(out, schema=MONTH_SKETCHES_SCHEMA)


def _month_days(month: date) -> tuple[date, date]:
    first = month.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)


def day_files_by_month(day_delta: Any) -> dict[str, list[str]]:
    """The live files of the day sketches per month (paths as the log names them)."""
    actions = add_actions(day_delta)
    out: dict[str, list[str]] = {}
    column = f"partition.{DAY_SKETCHES_TABLE.month_column}"
    if column not in actions.column_names:  # a table in the former day layout: no month is merged
        return out
    for path, month in zip(actions["path"].to_pylist(), actions[column].to_pylist(), strict=True):
        out.setdefault(month, []).append(path)
    return out


def merge_sources(month_delta: Any) -> dict[str, set[str]]:
    """Per month, the day sketches' file(s) its live merge files were built from (their ``source`` statistics)."""
    actions = add_actions(month_delta)
    out: dict[str, set[str]] = {}
    if actions.num_rows == 0:
        return out
    lows = actions[f"min.{SOURCE_COLUMN}"].to_pylist() if f"min.{SOURCE_COLUMN}" in actions.column_names else None
    highs = actions[f"max.{SOURCE_COLUMN}"].to_pylist() if f"max.{SOURCE_COLUMN}" in actions.column_names else None
    for i, month in enumerate(actions[f"partition.{MONTH_SKETCHES_TABLE.month_column}"].to_pylist()):
        low = lows[i] if lows is not None else None
        high = highs[i] if highs is not None else None
        out.setdefault(month, set()).add(low if low is not None and low == high else "")  # "": unknown, stale
    return out


def current_months(day_delta: Any | None, month_delta: Any | None) -> set[str]:
    """The months (``YYYY-MM``) whose merge may be read: their day sketches are one file and every live file of the
    merge was built from it."""
    if day_delta is None or month_delta is None:
        return set()
    files = day_files_by_month(day_delta)
    return {month for month, sources in merge_sources(month_delta).items()
            if len(files.get(month, [])) == 1 and sources == {files[month][0]}}


def merge_month(settings: Settings, month: date, run_id: str | None = None, *,
                operation: str = "compact") -> dict[str, Any] | None:
    """Merge the month of ``month`` from its day sketches as they are now, replacing its merge (one commit labelled
    ``month=YYYY-MM``). A month whose day sketches are not one file (not compacted, or gone) loses its merge instead
    (questions read its day rows). Returns what was committed, None when nothing was (no merge to drop)."""
    day_delta = open_table(settings, DAY_SKETCHES_TABLE)
    if day_delta is None or list(day_delta.metadata().partition_columns) != DAY_SKETCHES_TABLE.partition_by:
        return None  # (a table in the former day layout: see day_sketches.migrate)
    label = month_label(month)
    files = day_files_by_month(day_delta).get(label, [])
    month_delta = open_table(settings, MONTH_SKETCHES_TABLE)
    had = month_delta is not None and label in merge_sources(month_delta)
    if len(files) == 1:
        root = table_uri(settings, DAY_SKETCHES_TABLE).rstrip("/")
        path = files[0] if "://" in files[0] or files[0].startswith("/") else f"{root}/{files[0]}"
        with_day = DAY_SKETCHES_SCHEMA.append(pa.field(DAY_SKETCHES_TABLE.day_column, pa.date32()))
        days = read_tables(lake_filesystem(settings), [fs_path(path)], with_day)
        assert days is not None
        rows = month_rows(days.select(DAY_SKETCHES_SCHEMA.names), month, files[0])
    elif had:
        rows = MONTH_SKETCHES_SCHEMA.empty_table()
    else:
        return None
    data = rows.append_column(MONTH_SKETCHES_TABLE.day_column,
                              pa.array([month.replace(day=1)] * rows.num_rows, pa.date32()))
    data = data.append_column(MONTH_SKETCHES_TABLE.month_column, pa.array([label] * rows.num_rows, pa.string()))
    whole = rows.filter(pc.equal(rows["dimension"], "")) if rows.num_rows else rows
    provenance = {"dataset": MONTH_SKETCHES_TABLE.name, "partition": f"month={label}", "run_id": run_id,
                  "rows": rows.num_rows, "source": files[0] if len(files) == 1 else None,
                  "events": int(pc.sum(whole["events"]).as_py() or 0) if rows.num_rows else 0}
    version = write_month(settings, MONTH_SKETCHES_TABLE, label, data, operation, provenance)
    return {**provenance, "version": version, "tenants": sorted(set(rows["tenant"].to_pylist()))}


def merge_months(settings: Settings, before: date, run_id: str | None = None,
                 months: list[date] | None = None) -> list[dict[str, Any]]:
    """Merge every complete month (ending before ``before``) of more than one day whose merge is missing or stale (or
    only ``months``); returns what each merge committed."""
    day_delta = open_table(settings, DAY_SKETCHES_TABLE)
    if day_delta is None:
        return []
    month_delta = open_table(settings, MONTH_SKETCHES_TABLE)
    current = current_months(day_delta, month_delta)
    known = set(_months_of_several_days(day_delta)) | (set(merge_sources(month_delta)) if month_delta is not None
                                                        else set())
    wanted = sorted({month_label(m) for m in months} if months is not None else known)
    done = []
    for label in wanted:
        first = date.fromisoformat(f"{label}-01")
        if _month_days(first)[1] >= before or (months is None and label in current):
            continue
        result = merge_month(settings, first, run_id)
        if result is not None:
            done.append(result)
    return done


def _months_of_several_days(day_delta: Any) -> list[str]:
    """The months whose day sketches span more than one day (from the files' ``dt`` statistics): a month of one day
    has nothing to merge."""
    actions = add_actions(day_delta)
    if f"partition.{DAY_SKETCHES_TABLE.month_column}" not in actions.column_names:
        return []
    lows, highs = file_days(actions, DAY_SKETCHES_TABLE)
    spans: dict[str, tuple[date, date]] = {}
    for month, lo, hi in zip(actions[f"partition.{DAY_SKETCHES_TABLE.month_column}"].to_pylist(), lows.to_pylist(),
                             highs.to_pylist(), strict=True):
        was = spans.get(month, (lo, hi))
        spans[month] = (min(was[0], lo), max(was[1], hi))
    return [m for m, (lo, hi) in spans.items() if lo < hi]


def whole_months(start: datetime, end: datetime) -> list[str]:
    """The months all of whose days a total over ``[start, end)`` (UTC) reads: their midnights are in the range, as
    the day rows are chosen (a row is its day's midnight)."""
    first = start.date() if start == day_start(start.date()) else start.date() + timedelta(days=1)
    out = []
    month = first.replace(day=1) if first.day == 1 else (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    while day_start(_month_days(month)[1]) < end:
        out.append(month_label(month))
        month = _month_days(month)[1] + timedelta(days=1)
    return out


def day_ranges_outside(start: datetime, end: datetime, months: list[str]) -> list[tuple[date, date]]:
    """The day ranges of ``[start, end)`` outside ``months`` (sorted), as inclusive (first, last) days."""
    last = (end - timedelta(microseconds=1)).date()
    out: list[tuple[date, date]] = []
    at = start.date()
    for label in sorted(months):
        lo, hi = _month_days(date.fromisoformat(f"{label}-01"))
        if lo > at:
            out.append((at, lo - timedelta(days=1)))
        at = max(at, hi + timedelta(days=1))
    if at <= last:
        out.append((at, last))
    return out
