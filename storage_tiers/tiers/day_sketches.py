"""Day sketches: one small row per tenant, UTC day and dimension value, what long ranges are answered from.

A year of a tenant's daily rollups is millions of rows carrying tens of millions of user ids; its day
sketches are 365 x (1 + the values of the sketched dimensions) rows. Each row (``DAY_SKETCHES_SCHEMA``) holds
the day's exact ``events``, ``revenue`` and distinct ``users`` of the tenant (``dimension`` = ``value`` = ``""``)
or of one value of a sketched dimension, and a ``sketch`` of those users (``common.sketches``), so unique users
over any set of days is the merge of their sketches, within the bound ``common.sketches`` states.

Which dimensions (``PRECISIONS``): event, country and device, whose values are few. Not page, whose values are
unbounded: questions about pages keep reading the daily rollups. A missing value is stored as ``""``, as the
hot tier and the dashboards' SQL spell it.

The table (``cold/day_sketches``, partition ``dt``) is derived from the daily rollups only: a day is one commit
built from the day's rows of ``cold/rollups_daily``, whose content checksum it records (``rollups_daily_checksum``),
so ``is_current`` tells whether the daily rollups changed since (rebuilt, restated) and the day must be rebuilt.
The tier movers build it right after the daily rollups; a retention purge deletes a purged tenant's rows from it
in the same run as from the daily rollups (``storage_tiers.tiers.purge``) and records the daily rollups' new
checksum, so the day stays current.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from common.lake_io import day_start
from common.lake_tables import COLD_ROLLUPS_DAILY_TABLE, DAY_SKETCHES_SCHEMA, DAY_SKETCHES_TABLE
from common.settings import Settings
from common.sketches import encode, hash_each
from storage_tiers.tiers.cold_files import ColdDay, publish_day, published, read_day

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
    """Whether the published day sketches were built from the day's daily rollups as they are now."""
    daily = published(settings, COLD_ROLLUPS_DAILY_TABLE, day)
    sketches = published(settings, DAY_SKETCHES_TABLE, day)
    if daily is None:
        return sketches is None
    return sketches is not None and sketches.get("rollups_daily_checksum") == daily.get("checksum")


def build_day_sketches(settings: Settings, day: date, run_id: str | None = None, *,
                       force: bool = False) -> ColdDay | None:
    """Build (or rebuild, when the daily rollups changed since) the day sketches of ``day`` from its daily
    rollups; None when the day has no daily rollups."""
    daily_manifest = published(settings, COLD_ROLLUPS_DAILY_TABLE, day)
    if daily_manifest is None:
        return None
    current = published(settings, DAY_SKETCHES_TABLE, day)
    if not force and current is not None and current.get("rollups_daily_checksum") == daily_manifest.get("checksum"):
        return ColdDay(DAY_SKETCHES_TABLE.name, day, int(current["rows"]), int(current.get("bytes", 0)),
                       current.get("checksum", ""), f"{DAY_SKETCHES_TABLE.uri(settings)}/dt={day}", current,
                       built=False)
    daily = read_day(settings, COLD_ROLLUPS_DAILY_TABLE, day)
    return publish_day_sketches(settings, day, daily, daily_manifest, run_id)


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


def backfill(settings: Settings, run_id: str | None = None, progress: Any = print) -> list[date]:
    """Build the sketches of every day the daily rollups hold whose sketches are missing or not current (a lake
    written before the day sketches existed); returns the days built. Safe to run again: current days are skipped."""
    from common.lake_tables import open_table, partition_stats

    delta = open_table(settings, COLD_ROLLUPS_DAILY_TABLE)
    built = []
    for start in sorted(partition_stats(delta, COLD_ROLLUPS_DAILY_TABLE)) if delta is not None else []:
        day = start.date()
        result = build_day_sketches(settings, day, run_id)
        if result is not None and result.built:
            built.append(day)
            progress(f"day sketches of {day}: {result.rows} rows")
    return built


if __name__ == "__main__":  # python -m storage_tiers.tiers.day_sketches: backfill the lake the settings name
    days = backfill(Settings(), "backfill")
    print(f"built the day sketches of {len(days)} day(s)")
