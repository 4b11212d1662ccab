"""Report schedules, delivery claims and delivery history in the hot store (``sql/clickhouse/014_…``).

Schedules are control-plane data like dashboards: every API replica, the Dagster sensor and its runs read the
same rows. A delivery is made exactly once per (schedule, period, channel) by a *claim*: a run inserts a row
for the next claim generation with the deduplication token ``schedule/period/channel/generation``, so of all
runs racing for a generation (a re-run, a second daemon, a retried step) only the first insert is kept, and
each reads the generation back to learn whether it won. The winner delivers and records ``sent``, or records
``failed`` (which frees the next generation for a later run). A winner that dies without recording anything
holds the claim for ``report_claim_lease_seconds``; after that the next generation may be claimed.

What stays possible: an email or webhook accepted by the receiver just before the process died, and never
recorded as ``sent``, is delivered again after the lease. Nothing can close that window with SMTP or plain
HTTP; it is the width of one insert.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from common.hot_store import HotStore
from common.row_versions import RowVersions
from common.sql_files import sql_sections
from serving.reports.schedules import ReportSchedule, ScheduleNotFound

_TS = pa.timestamp("ms", tz="UTC")
_SCHEDULES = pa.schema([
    ("tenant", pa.string()), ("id", pa.string()), ("dashboard", pa.string()), ("cadence", pa.string()),
    ("weekday", pa.uint8()), ("at_time", pa.string()), ("tz", pa.string()), ("formats", pa.string()),
    ("email_to", pa.string()), ("webhook_url", pa.string()), ("filters", pa.string()), ("created", _TS),
    ("deleted", pa.uint8()), ("version", pa.uint64()),
])
_CLAIMS = pa.schema([
    ("tenant", pa.string()), ("schedule_id", pa.string()), ("period", pa.string()), ("channel", pa.string()),
    ("generation", pa.uint32()), ("run_id", pa.string()), ("claimed_at", _TS),
])
_DELIVERIES = pa.schema([
    ("tenant", pa.string()), ("schedule_id", pa.string()), ("period", pa.string()), ("channel", pa.string()),
    ("generation", pa.uint32()), ("at", _TS), ("kind", pa.string()), ("run_id", pa.string()),
    ("attempt", pa.uint32()), ("detail", pa.string()),
])


def new_schedule_id() -> str:
    return f"rs-{uuid.uuid4().hex[:12]}"


class ScheduleStore:
    """CRUD of a tenant's report schedules (blocking calls: run them off the event loop)."""

    def __init__(self, store: HotStore) -> None:
        self._store = store
        self._sql = sql_sections("clickhouse/queries/reports.sql")
        self._versions = RowVersions()

    def _rows(self, name: str, **params: Any) -> list[ReportSchedule]:
        return [_schedule(r) for r in self._store.query_arrow(self._sql[name], params).to_pylist()]

    def list(self, tenant: str) -> list[ReportSchedule]:
        return self._rows("schedules_of_tenant", tenant=tenant)

    def all(self) -> list[ReportSchedule]:
        return self._rows("all_schedules")

    def get(self, tenant: str, schedule_id: str) -> ReportSchedule:
        found = self._rows("schedule", tenant=tenant, id=schedule_id)
        if not found:
            raise ScheduleNotFound(f"no report schedule {schedule_id!r} for this tenant; "
                                   "GET /v1/reports/schedules lists them")
        return found[0]

    def put(self, schedule: ReportSchedule, *, deleted: bool = False) -> None:
        row = {
            "tenant": schedule.tenant, "id": schedule.id, "dashboard": schedule.dashboard,
            "cadence": schedule.cadence, "weekday": schedule.weekday, "at_time": schedule.at, "tz": schedule.tz,
            "formats": json.dumps(list(schedule.formats)), "email_to": json.dumps(list(schedule.email_to)),
            "webhook_url": schedule.webhook_url, "filters": json.dumps(list(schedule.filters)),
            "created": schedule.created, "deleted": int(deleted), "version": self._versions.next(),
        }
        self._store.insert_arrow("report_schedules", pa.Table.from_pylist([row], schema=_SCHEDULES))

    def delete(self, tenant: str, schedule_id: str) -> None:
        self.put(self.get(tenant, schedule_id), deleted=True)


def _schedule(row: dict[str, Any]) -> ReportSchedule:
    created = row["created"]
    created = created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)
    return ReportSchedule(
        id=row["id"], tenant=row["tenant"], dashboard=row["dashboard"], cadence=row["cadence"], at=row["at_time"],
        tz=row["tz"], weekday=int(row["weekday"]), formats=tuple(json.loads(row["formats"])),
        email_to=tuple(json.loads(row["email_to"])), webhook_url=row["webhook_url"],
        filters=tuple(json.loads(row["filters"])), created=created,
    )


@dataclass(frozen=True)
class Claim:
    """The outcome of asking for a delivery: ``owned`` (deliver it), else why not (``reason``)."""

    owned: bool
    generation: int = 0
    reason: str = ""


class DeliveryLog:
    """Claims and history of deliveries (blocking calls)."""

    def __init__(self, store: HotStore, lease_seconds: float = 900.0) -> None:
        self._store = store
        self._sql = sql_sections("clickhouse/queries/reports.sql")
        self._lease = timedelta(seconds=lease_seconds)

    def _query(self, name: str, **params: Any) -> list[dict[str, Any]]:
        return self._store.query_arrow(self._sql[name], params).to_pylist()

    def outcomes(self, tenant: str, schedule_id: str, period: str) -> list[dict[str, Any]]:
        return self._query("outcomes", tenant=tenant, schedule_id=schedule_id, period=period)

    def sent_channels(self, tenant: str, schedule_id: str, period: str) -> set[str]:
        return {o["channel"] for o in self.outcomes(tenant, schedule_id, period) if o["kind"] == "sent"}

    def sent_since(self, since: datetime) -> dict[tuple[str, str], set[str]]:
        """(schedule id, period) → channels delivered, for deliveries recorded since ``since``."""
        rows = self._query("sent_periods", since=since.astimezone(UTC).replace(tzinfo=None))
        return {(r["schedule_id"], r["period"]): set(r["channels"]) for r in rows}

    def claim(self, schedule: ReportSchedule, period: str, channel: str, run_id: str,
              now: datetime | None = None) -> Claim:
        """Ask to deliver ``channel`` of ``period``: owned when this run holds the newest live claim."""
        now = now or datetime.now(UTC)
        outcomes = [o for o in self.outcomes(schedule.tenant, schedule.id, period) if o["channel"] == channel]
        if any(o["kind"] == "sent" for o in outcomes):
            return Claim(False, reason="already delivered")
        claims = self._claims(schedule.id, period, channel)
        if claims:
            newest = claims[-1]
            if newest["run_id"] == run_id:
                return Claim(True, newest["generation"])  # this run's own claim (a retried step)
            failed = any(o["kind"] == "failed" and o["generation"] == newest["generation"] for o in outcomes)
            if not failed and _utc(newest["claimed_at"]) + self._lease > now:
                return Claim(False, newest["generation"], f"run {newest['run_id']} is delivering it")
        generation = (claims[-1]["generation"] + 1) if claims else 1
        row = {"tenant": schedule.tenant, "schedule_id": schedule.id, "period": period, "channel": channel,
               "generation": generation, "run_id": run_id, "claimed_at": now}
        self._store.insert_arrow("report_claims", pa.Table.from_pylist([row], schema=_CLAIMS),
                                 token=f"report-claim/{schedule.id}/{period}/{channel}/{generation}")
        winner = next(c for c in self._claims(schedule.id, period, channel) if c["generation"] == generation)
        if winner["run_id"] != run_id:
            return Claim(False, generation, f"run {winner['run_id']} claimed it first")
        self.record(schedule, period, channel, generation, "claimed", run_id)
        return Claim(True, generation)

    def _claims(self, schedule_id: str, period: str, channel: str) -> list[dict[str, Any]]:
        rows = self._query("claims", schedule_id=schedule_id, period=period, channel=channel)
        first: dict[int, dict[str, Any]] = {}
        for row in rows:  # one row per generation (deduplicated); the first is kept should a replica differ
            first.setdefault(int(row["generation"]), row)
        return [first[g] for g in sorted(first)]

    def record(self, schedule: ReportSchedule, period: str, channel: str, generation: int, kind: str, run_id: str,
               attempt: int = 0, detail: str = "") -> None:
        row = {"tenant": schedule.tenant, "schedule_id": schedule.id, "period": period, "channel": channel,
               "generation": generation, "at": datetime.now(UTC), "kind": kind, "run_id": run_id,
               "attempt": attempt, "detail": detail[:500]}
        self._store.insert_arrow("report_deliveries", pa.Table.from_pylist([row], schema=_DELIVERIES))

    def history(self, tenant: str, schedule_id: str, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._query("history", tenant=tenant, schedule_id=schedule_id, limit=limit)
        return list(reversed(rows))  # oldest first


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
