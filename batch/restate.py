"""Restating one hour of the hot tier from the batch layer's exact rollups.

The hour is built in staging tables first (``sql/clickhouse/005_restatement_staging.sql``), compared
with what the stream wrote (the speed layer's drift), then swapped in with ``REPLACE PARTITION``,
which is atomic per table: a dashboard sees either the stream's hour or the batch's, never a mix.
Everything goes through the hot-store interface, so it works through the hot node in embedded mode.
Re-running it for the same data changes nothing: staging is cleared first and the swap replaces.

A restatement may only *add* what the speed layer missed (late events), never take away what it
counted: before the swap, every live ``(tenant, event_id)`` of the hour in ``events_raw`` must be in
the staged rows, otherwise the swap is refused (``RestatementRefused``) and the live hour is left as
it is. ``allow_removals=True`` is the explicit, logged exception for an operator who knows the live
rows are wrong (rows written by hand, a tenant's data deleted on purpose).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from common import day_rollups, session_pieces
from common.hot_store import HotStore

# live table → its staging twin, in the order they are swapped
TABLES = (("events_raw", "events_raw_restate"), ("rollups_1m", "rollups_1m_restate"),
          ("rollups_1h", "rollups_1h_restate"))
HOUR_COLUMN = {"events_raw": "toStartOfHour(toDateTime(timestamp))", "rollups_1m": "toStartOfHour(minute)",
               "rollups_1h": "hour"}


class RestatementRefused(RuntimeError):
    """The staged hour lacks events the live hour holds: swapping would make dashboards go backwards."""

    def __init__(self, hour: datetime, missing: int, sample: list[str]) -> None:
        self.hour = hour
        self.missing = missing
        super().__init__(
            f"restatement of {hour:%Y-%m-%d %H}:00 UTC refused: {missing:,} (tenant, event_id) pair(s) counted in the "
            f"hot tier's events_raw are missing from the batch layer's rows (e.g. {', '.join(sample)}), so the swap "
            "would remove events dashboards already show. Usually the archive was built before the landing "
            "committed them: wait until the hour is closed, re-run raw_events_archive and then rollups_hourly for "
            "the hour (the hourly_batch job runs both). The live hour is unchanged."
        )


@dataclass
class TenantDrift:
    tenant: str
    stream_events: int
    batch_events: int
    stream_users: int
    batch_users: int
    stream_revenue: float
    batch_revenue: float

    @property
    def events_error(self) -> float:
        """The speed layer's relative error on the event count of this hour."""
        return abs(self.stream_events - self.batch_events) / max(self.batch_events, 1)


@dataclass
class Restatement:
    hour: datetime
    raw_rows: int
    minute_rows: int
    drift: list[TenantDrift] = field(default_factory=list)

    @property
    def max_events_error(self) -> float:
        return max((d.events_error for d in self.drift), default=0.0)


def _hour_totals(store: HotStore, table: str, hour: datetime) -> dict[str, dict]:
    rows = store.query_arrow(
        f"SELECT tenant, sum(events) AS events, uniqMerge(users) AS users, sum(revenue) AS revenue "
        f"FROM {table} WHERE hour = {{hour:DateTime('UTC')}} GROUP BY tenant",
        {"hour": hour},
    ).to_pylist()
    return {r["tenant"]: r for r in rows}


def _has_rows(store: HotStore, table: str, hour: datetime) -> bool:
    column = HOUR_COLUMN[table.removesuffix("_restate")]
    sql = f"SELECT count() AS n FROM {table} WHERE {column} = {{hour:DateTime('UTC')}}"
    return store.query_arrow(sql, {"hour": hour}).to_pylist()[0]["n"] > 0


def drift_of(store: HotStore, hour: datetime) -> list[TenantDrift]:
    """Stream (live) vs batch (staging) totals per tenant for an hour that is staged."""
    stream = _hour_totals(store, "rollups_1h", hour)
    batch = _hour_totals(store, "rollups_1h_restate", hour)
    out = []
    for tenant in sorted(set(stream) | set(batch)):
        s = stream.get(tenant, {"events": 0, "users": 0, "revenue": 0.0})
        b = batch.get(tenant, {"events": 0, "users": 0, "revenue": 0.0})
        out.append(TenantDrift(tenant, s["events"], b["events"], s["users"], b["users"], s["revenue"], b["revenue"]))
    return out


MISSING_SQL = """
SELECT count() AS missing, groupArray(5)(concat(tenant, '/', event_id)) AS sample
FROM (SELECT DISTINCT tenant, event_id FROM events_raw
      WHERE toStartOfHour(toDateTime(timestamp)) = {hour:DateTime('UTC')}) AS live
LEFT ANTI JOIN (SELECT DISTINCT tenant, event_id FROM events_raw_restate
                WHERE toStartOfHour(toDateTime(timestamp)) = {hour:DateTime('UTC')}) AS staged
USING (tenant, event_id)
"""


def missing_from_staging(store: HotStore, hour: datetime) -> tuple[int, list[str]]:
    """Live ``(tenant, event_id)`` pairs of the hour that the staged rows lack, with a few examples."""
    row = store.query_arrow(MISSING_SQL, {"hour": hour}).to_pylist()[0]
    return int(row["missing"]), list(row["sample"])


def _clear_staging(store: HotStore, params: dict) -> None:
    for _, staging in TABLES:
        store.command(f"ALTER TABLE {staging} DROP PARTITION {{hour:DateTime('UTC')}}", params)


def restate_hour(store: HotStore, hour: datetime, minute_rollups: pa.Table, raw_events: pa.Table,
                 allow_removals: bool = False, *, session_gap_minutes: float) -> Restatement:
    """Replace ``hour`` in events_raw, rollups_1m and rollups_1h with the batch layer's rows, then cut the hour
    into session pieces again (``common.session_pieces``; its old pieces are forgotten before the swap, so no
    question reads them beside the new rows) with ``session_gap_minutes`` (the settings' session gap), and copy
    its day's hours up to it into the day copy of rollups_1h again (``common.day_rollups``).

    Raises ``RestatementRefused`` (the live hour untouched) when the staged rows lack a live
    ``(tenant, event_id)``, unless ``allow_removals``. The hour must be closed (``batch.hour_state``):
    the check and the swap are not one transaction, so rows the stream inserts in between would be lost.
    """
    hour = hour.astimezone(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    params = {"hour": hour}
    _clear_staging(store, params)
    store.insert_arrow("events_raw_restate", raw_events)
    store.insert_arrow("rollups_restate_ingest", minute_rollups)
    if not allow_removals:
        missing, sample = missing_from_staging(store, hour)
        if missing:
            _clear_staging(store, params)
            raise RestatementRefused(hour.replace(tzinfo=UTC), missing, sample)
    drift = drift_of(store, hour)
    session_pieces.forget(store, hour)
    for live, staging in TABLES:
        if _has_rows(store, staging, hour):
            store.command(f"ALTER TABLE {live} REPLACE PARTITION {{hour:DateTime('UTC')}} FROM {staging}", params)
        else:
            store.command(f"ALTER TABLE {live} DROP PARTITION {{hour:DateTime('UTC')}}", params)
        store.command(f"ALTER TABLE {staging} DROP PARTITION {{hour:DateTime('UTC')}}", params)
    session_pieces.build(store, hour, session_gap_minutes)
    day_rollups.restated(store, hour)
    return Restatement(hour.replace(tzinfo=UTC), raw_events.num_rows, minute_rollups.num_rows, drift)
