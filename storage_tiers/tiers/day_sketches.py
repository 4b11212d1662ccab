"""Day sketches: one small row per tenant, UTC day and dimension value, what long ranges are answered from.

A year of a tenant's daily rollups is millions of rows carrying tens of millions of user ids; its day
sketches are 365 x (1 + the values of the sketched dimensions) rows. Each row (``DAY_SKETCHES_SCHEMA``) holds
the day's exact ``events``, ``revenue`` and distinct ``users`` of the tenant (``dimension`` = ``value`` = ``""``)
or of one value of a sketched dimension, and a ``sketch`` of those users (``common.sketches``), so unique users
over any set of days is the merge of their sketches, within the bound ``common.sketches`` states.

Which dimensions (``PRECISIONS``): event, country and device, whose values are few. Not page, whose values are
unbounded: questions about pages keep reading the daily rollups. A missing value is stored as ``""``, as the
hot tier and the dashboards' SQL spell it.

The table (``cold/day_sketches``, partitioned by ``month`` = 'YYYY-MM', each row carrying its day in ``dt``) is
derived from the daily rollups only: a day is one commit built from the day's rows of ``cold/rollups_daily``, whose
content checksum it records (``rollups_daily_checksum``), so ``is_current`` tells whether the daily rollups changed
since (rebuilt, restated) and the day must be rebuilt. The tier movers build it right after the daily rollups; a
retention purge deletes a purged tenant's rows from it in the same run as from the daily rollups
(``storage_tiers.tiers.purge``) and records the daily rollups' new checksum, so the day stays current.

Why months: a 7-year question would otherwise open 2,557 one-day files, and opening them, not reading their
rows, was most of its time. A month still being written holds one file per day (a day is replaced alone); once the
month is complete the movers compact it into ONE file sorted by tenant, dimension, value and day
(``compact_months``: one commit labelled ``month=YYYY-MM`` whose provenance holds each day's under ``days``), so
seven years are ~84 files plus the current month's days. Any later change of a day in a compacted month (a
rebuild, a purge) is a commit whose predicate matches that file: delta-rs rewrites the month's file with the change
(still one file), and the old file stays readable by time travel until vacuum.

Which days the API may answer from them (``stale_days``, the same rule for the reader and the movers): a day the
daily rollups hold is covered when a live file of the sketches spans it and was written no earlier than every live
file of the day's daily rollups (their ``modification_time`` in the two tables' logs: no data read). The sketches
of a day are always written after the daily rollups they were built from, so a day whose daily rollups changed
since (rebuilt, a purge interrupted between the two tables), or that was never sketched (a lake written before the
day sketches existed, a month not backfilled yet), is stale, and the API reads it the old way; the movers build
such days by themselves (``backfill``, a bounded number of months a run).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from common.lake import fs_path, lake_filesystem
from common.lake_io import day_start, read_tables
from common.lake_tables import (
    COLD_ROLLUPS_DAILY_TABLE,
    DAY_SKETCHES_SCHEMA,
    DAY_SKETCHES_TABLE,
    add_actions,
    commit_metadata,
    file_days,
    month_label,
    month_partition_label,
    open_table,
    partition_files,
    replace_month,
)
from common.settings import Settings
from common.sketches import encode, hash_each
from storage_tiers.tiers.cold_files import (
    COLD_MANIFEST_FORMAT,
    ColdDay,
    content_checksum,
    publish_day,
    published,
    read_day,
)

# dimension -> sketch precision ("" is the tenant's whole day): 2**p one-byte registers, error 1.04/sqrt(2**p)
PRECISIONS: dict[str, int] = {"": 12, "event": 11, "device": 11, "country": 10}
SORT_KEY = ["tenant", "dimension", "value"]


def sketch_rows(daily: pa.Table, day: date) -> pa.Table:
    """The day sketch rows of one day's daily rollups (columns of the daily rollups table)."""
    if daily.num_rows == 0:
        return DAY_SKETCHES_SCHEMA.empty_table()
    ids = pc.list_flatten(daily["user_ids"])
    parent = pc.list_parent_indices(daily["user_ids"])
    known = pc.is_valid(ids)  # a missing user id is nobody (as DuckDB's list_distinct counts the daily rollups)
    ids, parent = ids.filter(known), parent.filter(known)
    distinct = pc.unique(ids)
    hashes = hash_each(distinct.to_pylist())
    user_hash = pa.array(hashes[pc.index_in(ids, distinct).to_numpy(zero_copy_only=False)], pa.uint64())
    exploded: dict[str, Any] = {"tenant": pc.take(daily["tenant"], parent), "h": user_hash}
    pieces = []
    for dimension in PRECISIONS:
        values = (pa.repeat(pa.scalar(""), daily.num_rows) if dimension == ""
                  else pc.fill_null(daily[dimension], ""))
        measures = pa.table({"tenant": daily["tenant"], "value": values, "events": daily["events"],
                             "revenue": daily["revenue"]}).group_by(["tenant", "value"], use_threads=False).aggregate(
            [("events", "sum"), ("revenue", "sum")])
        users = pa.table({"tenant": exploded["tenant"], "value": pc.take(values, parent), "h": exploded["h"]}) \
            .group_by(["tenant", "value"], use_threads=False).aggregate([("h", "distinct")])
        sketches = {(t, v): s for t, v, s in zip(users["tenant"].to_pylist(), users["value"].to_pylist(),
                                                   users["h_distinct"], strict=True)}
        precision = PRECISIONS[dimension]
        rows: dict[str, list[Any]] = {name: [] for name in DAY_SKETCHES_SCHEMA.names}
        for tenant, value, events, revenue in zip(measures["tenant"].to_pylist(), measures["value"].to_pylist(),
                                                  measures["events_sum"].to_pylist(),
                                                  measures["revenue_sum"].to_pylist(), strict=True):
            members = sketches.get((tenant, value))
            member_hashes = (np.asarray(members.values.to_numpy(zero_copy_only=False), dtype=np.uint64)
                             if members is not None else np.empty(0, np.uint64))
            rows["tenant"].append(tenant)
            rows["dimension"].append(dimension)
            rows["value"].append(value)
            rows["day"].append(day_start(day))
            rows["events"].append(int(events or 0))
            rows["revenue"].append(float(revenue or 0.0))
            rows["users"].append(len(member_hashes))
            rows["sketch"].append(encode(np.sort(member_hashes), precision))
        pieces.append(pa.table(rows, schema=DAY_SKETCHES_SCHEMA))
    return pa.concat_tables(pieces).sort_by([(c, "ascending") for c in SORT_KEY])


def is_current(settings: Settings, day: date) -> bool:
    """Whether the published day sketches were built from the day's daily rollups as they are now (their checksum),
    and after them (``stale_days``: what the API checks)."""
    daily = published(settings, COLD_ROLLUPS_DAILY_TABLE, day)
    sketches = published(settings, DAY_SKETCHES_TABLE, day)
    if daily is None:
        return sketches is None
    if sketches is None or sketches.get("rollups_daily_checksum") != daily.get("checksum"):
        return False
    return day not in stale_days(open_table(settings, DAY_SKETCHES_TABLE),
                                 open_table(settings, COLD_ROLLUPS_DAILY_TABLE), (day, day))


def stale_days(sketches: Any | None, daily: Any | None, days: tuple[date, date] | None = None,
               warm: Any | None = None) -> list[date]:
    """The days (of ``days``, or all) the daily rollups hold whose sketches are missing or older than them, from the
    two tables' logs (see the module's docstring). A table in the former day layout counts as missing. With ``warm``
    (the warm hourly rollups' table), also the days it holds that the daily rollups do not (not built yet, or refused
    by their check): the old way answers a total over them from the warm hours, the sketches could not."""
    newest: dict[date, int] = {}
    if daily is not None:
        daily_actions = add_actions(daily)
        first, _last = file_days(daily_actions, COLD_ROLLUPS_DAILY_TABLE)
        for day, written in zip(first.to_pylist(), _millis(daily_actions), strict=True):
            if days is None or days[0] <= day <= days[1]:
                newest[day] = max(written, newest.get(day, written))
    if warm is not None:
        from common.lake_tables import ROLLUPS_HOURLY_TABLE

        warm_days, _last = file_days(add_actions(warm), ROLLUPS_HOURLY_TABLE)
        for day in set(warm_days.to_pylist()):
            if (days is None or days[0] <= day <= days[1]) and day not in newest:
                newest[day] = 2 ** 62  # no sketch can be newer: stale
    if not newest:
        return []
    covered: dict[date, int] = {}
    if sketches is not None and in_month_layout(sketches):
        actions = add_actions(sketches)
        if actions.num_rows:
            lows, highs = file_days(actions, DAY_SKETCHES_TABLE)
            for lo, hi, written in zip(lows.to_pylist(), highs.to_pylist(), _millis(actions), strict=True):
                day = lo if days is None else max(lo, days[0])
                end = hi if days is None else min(hi, days[1])
                while day <= end:
                    covered[day] = max(written, covered.get(day, written))
                    day += timedelta(days=1)
    return sorted(d for d, written in newest.items() if covered.get(d, -1) < written)


def _millis(actions: pa.Table) -> list[int]:
    """Each file's modification time (ms since the epoch) as the log records it."""
    column = actions["modification_time"]
    if pa.types.is_timestamp(column.type):
        column = pc.cast(pc.cast(column, pa.timestamp("ms")), pa.int64())
    return [int(v or 0) for v in column.to_pylist()]


def in_month_layout(delta: Any) -> bool:
    """Whether the table is partitioned by month (tables written before the months were partitioned by ``dt``)."""
    return list(delta.metadata().partition_columns) == DAY_SKETCHES_TABLE.partition_by


def migrate(settings: Settings, run_id: str | None = None) -> bool:
    """Bring a table written in the former day layout (partitioned by ``dt``) to the month layout: it is derived
    data, so its rows are dropped in one commit (the new partitioning, no file) and the days are built again
    (``backfill``; the API reads the old way meanwhile). Returns whether it did."""
    from deltalake import CommitProperties, write_deltalake

    from common.lake_tables import storage_options, with_partition_columns, writer_properties

    delta = open_table(settings, DAY_SKETCHES_TABLE)
    if delta is None or in_month_layout(delta):
        return False
    empty = with_partition_columns(DAY_SKETCHES_SCHEMA.empty_table(), DAY_SKETCHES_TABLE,
                                   datetime(1970, 1, 1, tzinfo=UTC))
    write_deltalake(delta, empty, partition_by=DAY_SKETCHES_TABLE.partition_by, mode="overwrite",
                    schema_mode="overwrite", storage_options=storage_options(settings),
                    writer_properties=writer_properties(DAY_SKETCHES_TABLE),
                    commit_properties=CommitProperties(custom_metadata=commit_metadata("migrate", "", {
                        "reason": "day sketches partitioned by month: the day layout's rows are dropped and rebuilt",
                        "run_id": run_id}), max_commit_retries=50))
    return True


def build_day_sketches(settings: Settings, day: date, run_id: str | None = None, *,
                       force: bool = False) -> ColdDay | None:
    """Build (or rebuild, when the daily rollups changed since) the day sketches of ``day`` from its daily
    rollups; None when the day has no daily rollups."""
    daily_manifest = published(settings, COLD_ROLLUPS_DAILY_TABLE, day)
    if daily_manifest is None:
        return None
    migrate(settings, run_id)
    current = published(settings, DAY_SKETCHES_TABLE, day)
    if not force and current is not None and current.get("rollups_daily_checksum") == daily_manifest.get("checksum") \
            and not stale_days(open_table(settings, DAY_SKETCHES_TABLE),
                               open_table(settings, COLD_ROLLUPS_DAILY_TABLE), (day, day)):
        return ColdDay(DAY_SKETCHES_TABLE.name, day, int(current["rows"]), int(current.get("bytes", 0)),
                       current.get("checksum", ""), f"{DAY_SKETCHES_TABLE.uri(settings)}/{month_partition_label(day)}",
                       current, built=False)
    for _attempt in range(3):
        daily = read_day(settings, COLD_ROLLUPS_DAILY_TABLE, day)
        result = publish_day_sketches(settings, day, daily, daily_manifest, run_id)
        now = published(settings, COLD_ROLLUPS_DAILY_TABLE, day)
        if now is None or now.get("checksum") == daily_manifest.get("checksum"):
            return result
        daily_manifest = now  # the daily rollups were rewritten while the sketches were built: build them again
    return result


def publish_day_sketches(settings: Settings, day: date, daily: pa.Table, daily_manifest: dict[str, Any],
                         run_id: str | None = None) -> ColdDay:
    """Commit the sketches of ``daily`` (the day's daily rollups, as published with ``daily_manifest``) as the day."""
    rows = sketch_rows(daily, day)
    whole = rows.filter(pc.equal(rows["dimension"], ""))
    return publish_day(settings, DAY_SKETCHES_TABLE, day, rows, SORT_KEY, [], {
        "rollups_daily_checksum": daily_manifest.get("checksum"),
        "rollups_daily_version": daily_manifest.get("version"),
        "events": int(pc.sum(whole["events"]).as_py() or 0),
        "precisions": PRECISIONS,
    }, run_id)


def compact_month(settings: Settings, month: date, run_id: str | None = None) -> dict[str, Any] | None:
    """Rewrite the month of ``month`` (any day of it) as ONE file sorted by tenant, dimension, value and day, in one
    commit labelled ``month=YYYY-MM`` whose provenance carries each day's (``days``); the rows do not change. None
    when the month has no file or is one file already."""
    delta = open_table(settings, DAY_SKETCHES_TABLE)
    if delta is None or not in_month_layout(delta):
        return None
    label = month_label(month)
    actions = add_actions(delta)
    paths = [p for p, m in zip(actions["path"].to_pylist(),
                               actions[f"partition.{DAY_SKETCHES_TABLE.month_column}"].to_pylist(), strict=True)
             if m == label]
    if len(paths) < 2:
        return None
    files = partition_files(settings, DAY_SKETCHES_TABLE, days=_month_days(month), delta=delta)
    with_day = DAY_SKETCHES_SCHEMA.append(pa.field(DAY_SKETCHES_TABLE.day_column, pa.date32()))
    rows = read_tables(lake_filesystem(settings), [fs_path(f) for f in files], with_day)
    assert rows is not None
    rows = rows.sort_by([(c, "ascending") for c in [*SORT_KEY, DAY_SKETCHES_TABLE.day_column]])
    days: dict[str, Any] = {}
    for day in sorted(set(rows[DAY_SKETCHES_TABLE.day_column].to_pylist())):
        manifest = published(settings, DAY_SKETCHES_TABLE, day, delta) or {}
        days[day.isoformat()] = {k: v for k, v in manifest.items() if k not in ("version", "bytes")}
    whole = rows.filter(pc.equal(rows["dimension"], ""))
    provenance = {
        "format": COLD_MANIFEST_FORMAT, "dataset": DAY_SKETCHES_TABLE.name,
        "partition": month_partition_label(month), "run_id": run_id, "rows": rows.num_rows,
        "checksum": content_checksum(rows.select(DAY_SKETCHES_SCHEMA.names), DAY_SKETCHES_SCHEMA),
        "events": int(pc.sum(whole["events"]).as_py() or 0), "files_compacted": len(paths), "days": days,
    }
    from deltalake.exceptions import CommitFailedError

    started = int(datetime.now(UTC).timestamp() * 1000)
    try:
        version = replace_month(settings, delta, DAY_SKETCHES_TABLE, label, rows, "compact", provenance)
    except CommitFailedError:
        return None  # the month changed meanwhile: the next run compacts it as it is then
    _rebuild_changed_since(settings, _month_days(month), started, run_id)
    return {**provenance, "version": version}


def _rebuild_changed_since(settings: Settings, days: tuple[date, date], since_ms: int, run_id: str | None) -> None:
    """Rebuild the days whose daily rollups were rewritten after ``since_ms`` (while a rewrite of their sketches was
    being prepared): that rewrite is newer than them but was built from what they were before."""
    daily = open_table(settings, COLD_ROLLUPS_DAILY_TABLE)
    if daily is None:
        return
    actions = add_actions(daily)
    first, _last = file_days(actions, COLD_ROLLUPS_DAILY_TABLE)
    for day in sorted({d for d, written in zip(first.to_pylist(), _millis(actions), strict=True)
                       if days[0] <= d <= days[1] and written >= since_ms}):
        build_day_sketches(settings, day, run_id, force=True)


def _month_days(month: date) -> tuple[date, date]:
    first = month.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


def compact_months(settings: Settings, before: date, run_id: str | None = None,
                   progress: Any = None) -> list[dict[str, Any]]:
    """Compact every month that ends before ``before`` (complete: no more days will be added) and holds several
    files (``compact_month``); returns what each compaction committed."""
    delta = open_table(settings, DAY_SKETCHES_TABLE)
    if delta is None or not in_month_layout(delta):
        return []
    actions = add_actions(delta)
    counts: dict[str, int] = {}
    for month in actions[f"partition.{DAY_SKETCHES_TABLE.month_column}"].to_pylist():
        counts[month] = counts.get(month, 0) + 1
    done = []
    for month, files in sorted(counts.items()):
        first = date.fromisoformat(f"{month}-01")
        if files < 2 or _month_days(first)[1] >= before:
            continue
        result = compact_month(settings, first, run_id)
        if result is not None:
            done.append(result)
            if progress:
                progress(f"day sketches of {month}: {files} files compacted into one")
    return done


def backfill(settings: Settings, run_id: str | None = None, progress: Any = print, *,
             max_days: int | None = None, compact_before: date | None = None) -> list[date]:
    """Build the sketches of every day the daily rollups hold whose sketches are missing or not current (a lake
    written before the day sketches existed, a day rebuilt since), newest first, at most ``max_days`` of them
    (None: all); then compact the complete months (before ``compact_before``, default today UTC). Returns the days
    built. Then merge the compacted months' month sketches (``storage_tiers.tiers.month_sketches``). Safe to run
    again: current days and months are skipped."""
    migrate(settings, run_id)
    daily = open_table(settings, COLD_ROLLUPS_DAILY_TABLE)
    built: list[date] = []
    todo = stale_days(open_table(settings, DAY_SKETCHES_TABLE), daily)
    for day in reversed(todo):
        if max_days is not None and len(built) >= max_days:
            break
        result = build_day_sketches(settings, day, run_id)
        if result is not None and result.built:
            built.append(day)
            progress(f"day sketches of {day}: {result.rows} rows")
    compact_months(settings, compact_before or datetime.now(UTC).date(), run_id, progress)
    from storage_tiers.tiers.month_sketches import merge_months

    for merged in merge_months(settings, compact_before or datetime.now(UTC).date(), run_id):
        progress(f"month sketches of {merged['partition']}: {merged['rows']} rows")
    return sorted(built)


if __name__ == "__main__":  # python -m storage_tiers.tiers.day_sketches: backfill the lake the settings name
    days = backfill(Settings(), "backfill")
    print(f"built the day sketches of {len(days)} day(s)")
