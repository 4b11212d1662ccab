"""Tier movers: hot → warm → cold for one UTC day, each step only after the next tier is verified.

``TierMover`` does one day at a time (the Dagster assets are partitioned by day) and never reads a
clock: ``as_of`` is given, so a backfill or a test can run "as of" any date.

* ``drop_hot``: every hour of the day older than the hot horizon of its table is dropped from the hot
  tier (``ALTER TABLE … DROP PARTITION``) only if the lake holds the same rows: ``events_raw`` rows and
  ``rollups_1m`` ``sum(events)`` must equal the archived rows of the hour (the archive table's log, or the
  cold day's per-hour count once the hour has moved on); ``rollups_1h`` ``sum(events)`` must equal the warm
  hourly rollups' ``sum(events)`` (or the archived rows when those are gone). An hour that does not match
  stays, and is reported.
* ``build_daily_rollups``: the day's daily rollups, as soon as the day is complete (they are small and
  the only rollups kept past the warm horizon).
  With them, the day's sketches (``storage_tiers.tiers.day_sketches``: per tenant and dimension value, exact
  counts and a mergeable sketch of the users; rebuilt whenever the daily rollups changed), which long ranges
  are answered from.
* ``warm_to_cold``: once the day is past the warm horizon, its archive hours are compacted into the
  cold day (one commit of the cold events table), which is re-read from the table and checked (rows,
  content checksum and rows per hour as committed; rows per hour = archive rows per hour), marked cold,
  and only then are the archive hours and warm hourly rollups deleted: one Delta delete commit per hour
  (its version is in the audit record), then ``vacuum`` of files older than the history window
  (the tier policy's ``vacuum.history``), so recent versions stay readable by time travel.

Every action is appended to the audit log (``drop_hot``, ``compact_cold``, ``mark_cold``, ``move``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow.compute as pc
import pyarrow.fs as pafs

from common import day_rollups, session_pieces
from common.events import format_ts
from common.hot_store import HotStore
from common.lake import hour_partition
from common.lake_io import day_start
from common.lake_tables import (
    ARCHIVE_TABLE,
    COLD_EVENTS_TABLE,
    COLD_ROLLUPS_DAILY_TABLE,
    ROLLUPS_HOURLY_TABLE,
    WarmTable,
    delete_rows,
    open_table,
    table_uri,
    vacuum,
)
from common.settings import Settings
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.policy import TierPolicy
from storage_tiers.tiers.cold_files import (
    ColdDay,
    archive_sources,
    build_cold_events,
    build_rollups_daily,
    mark_cold,
    published,
    table_hours,
    verify_cold_day,
    warm_hour_rollups,
)
from storage_tiers.tiers.day_sketches import build_day_sketches, compact_months, stale_days
from storage_tiers.tiers.month_sketches import merge_months

# hot table → (dataset in the policy, hour expression, measure compared with the lake)
HOT_TABLES: dict[str, tuple[str, str, str]] = {
    "events_raw": ("events", "toStartOfHour(toDateTime(timestamp))", "count()"),
    "rollups_1m": ("rollups_1m", "toStartOfHour(minute)", "sum(events)"),
    "rollups_1h": ("rollups_hourly", "hour", "sum(events)"),
}
# days of missing or stale day sketches a mover run builds besides its own day (newest first): a lake written before
# the sketches existed is backfilled over a few runs; meanwhile the API reads those days the old way
SKETCH_BACKFILL_DAYS = 31
COMPLETE_AFTER = timedelta(minutes=15)  # the stream's watermark plus the landing margin (orchestration.hours)


@dataclass
class DayReport:
    day: date
    actions: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def add(self, record: dict[str, Any]) -> None:
        self.actions.append({k: record[k] for k in ("seq", "action", "dataset", "partition", "rows", "bytes")})


class TierMover:
    def __init__(
        self,
        settings: Settings,
        policy: TierPolicy,
        audit: AuditLog,
        as_of: datetime,
        store: HotStore | None = None,
        filesystem: pafs.FileSystem | None = None,
        run_id: str | None = None,
        progress: Any = print,
    ) -> None:
        from common.lake import lake_filesystem

        self.settings, self.policy, self.audit, self.store = settings, policy, audit, store
        self.as_of = as_of
        self.fs = filesystem or lake_filesystem(settings)
        self.run_id = run_id
        self.progress = progress

    # ----------------------------------------------------------------------------------- helpers

    def _past(self, end: datetime, dataset: str, tier: str) -> bool:
        """Whether data ending at ``end`` is older than ``dataset``'s horizon in ``tier``."""
        horizon = self.policy.horizon(dataset, tier)
        return horizon is not None and end <= self.as_of - horizon

    def lake_rows(self, hour: datetime) -> int | None:
        """Rows of ``hour`` that the lake holds: the archive table's log, else the cold day's count, else None."""
        archived = table_hours(self.settings, ARCHIVE_TABLE, hour.date()).get(hour.astimezone(UTC))
        if archived is not None:
            return int(archived["rows"])
        cold = published(self.settings, COLD_EVENTS_TABLE, hour.date())
        if cold is not None:
            return int(cold.get("hour_rows", {}).get(format_ts(hour), 0))
        return None

    def warm_rollup_events(self, hour: datetime) -> int | None:
        warm = warm_hour_rollups(self.settings, self.fs, hour)
        if warm is None:
            return None
        return int(pc.sum(warm["events"]).as_py() or 0)

    # ---------------------------------------------------------------------------------- hot → warm

    def drop_hot(self, day: date) -> DayReport:
        """Drop the day's hot hours past their horizon whose rows the lake holds (see module docstring)."""
        report = DayReport(day)
        if self.store is None:
            raise RuntimeError("drop_hot needs the hot store")
        start = day_start(day)
        for table, (dataset, hour_expr, measure) in HOT_TABLES.items():
            rows = self.store.query_arrow(
                f"SELECT toUnixTimestamp({hour_expr}) AS h, {measure} AS n FROM {table} "  # fixed names
                f"WHERE {hour_expr} >= {{day_start:DateTime('UTC')}} AND {hour_expr} < {{day_end:DateTime('UTC')}} "
                "GROUP BY h ORDER BY h",
                {"day_start": start.replace(tzinfo=None), "day_end": (start + timedelta(days=1)).replace(tzinfo=None)},
            ).to_pylist()
            for row in rows:
                hour = datetime.fromtimestamp(int(row["h"]), UTC)
                if not self._past(hour + timedelta(hours=1), dataset, "hot"):
                    report.skipped.append(f"{table} {hour_partition(hour)}: within the hot horizon")
                    continue
                hot_n = int(row["n"])
                lake_n = self.lake_rows(hour)
                if table == "rollups_1h":
                    warm = self.warm_rollup_events(hour)
                    lake_n = warm if warm is not None else lake_n
                if lake_n is None or lake_n != hot_n:
                    report.problems.append(
                        f"{table} {hour_partition(hour)}: hot holds {hot_n} events, the lake "
                        f"{'nothing' if lake_n is None else lake_n}; kept in the hot tier — archive and recompute "
                        "the hour (hourly_batch) first")
                    continue
                self.store.command(f"ALTER TABLE {table} DROP PARTITION {{hour:DateTime('UTC')}}",
                                   {"hour": hour.replace(tzinfo=None)})
                if table == "events_raw":  # the hour's session pieces are a copy of its rows
                    session_pieces.forget(self.store, hour)
                if table == "rollups_1h":  # its day is read from rollups_1h (what is left of it) from now on
                    day_rollups.moved(self.store, hour)
                record = self.audit.append(
                    "drop_hot", dataset, partition=hour_partition(hour), tier_from="hot", tier_to="warm",
                    rows=hot_n, run_id=self.run_id, reason=f"older than the hot horizon of {table}",
                    details={"table": table, "verified_against": "warm rollups" if table == "rollups_1h" else
                             "archive rows", "as_of": format_ts(self.as_of)})
                report.add(record)
        return report

    # ------------------------------------------------------------------------------- warm → cold

    def _record_cold(self, cold: ColdDay, dataset: str, report: DayReport) -> None:
        if cold.built:
            report.add(self.audit.append(
                "compact_cold", dataset, partition=f"dt={cold.day}", tier_from="warm", tier_to="cold",
                rows=cold.rows, bytes=cold.bytes, checksum=f"sha256:{cold.sha256}", run_id=self.run_id,
                reason="cold day committed from the warm tier",
                details={"path": cold.path, "sources": len(cold.manifest.get("sources", [])), "table": cold.dataset,
                         "table_version": cold.manifest.get("version")}))
        tagged = mark_cold(self.settings, self.policy, cold)
        if cold.built:
            report.add(self.audit.append(
                "mark_cold", dataset, partition=f"dt={cold.day}", tier_to="cold", rows=cold.rows, bytes=cold.bytes,
                checksum=f"sha256:{cold.sha256}", run_id=self.run_id,
                reason="S3 object tags" if tagged else "cold/ folder of the local lake",
                details={"objects": tagged or [cold.path], "tags": self.policy.s3_tags if tagged else {}}))

    def build_daily_rollups(self, day: date) -> DayReport:
        """Daily rollups of a complete day (rebuilt when its archive hours changed)."""
        report = DayReport(day)
        if day_start(day) + timedelta(days=1) + COMPLETE_AFTER > self.as_of:
            report.skipped.append(f"dt={day}: not complete yet")
            return report
        cold = build_rollups_daily(self.settings, self.fs, self.policy, day, self.run_id)
        if cold is None:
            report.skipped.append(f"dt={day}: no archived hours")
            return report
        self._record_cold(cold, "rollups_daily", report)
        self._build_sketches(day, report)
        return report

    def _build_sketches(self, day: date, report: DayReport) -> None:
        """The day's sketches from its daily rollups as they are now (nothing is written when they are current)."""
        sketches = build_day_sketches(self.settings, day, self.run_id)
        if sketches is not None:
            self._record_cold(sketches, "day_sketches", report)
        self._sketch_upkeep(day, report)

    def _sketch_upkeep(self, done: date, report: DayReport) -> None:
        """Build some missing or stale day sketches (``SKETCH_BACKFILL_DAYS``, newest first), then compact each complete
        month held in several files into one (``day_sketches.compact_months``), audited and tagged cold."""
        from common.lake_tables import (
            COLD_ROLLUPS_DAILY_TABLE,
            DAY_SKETCHES_TABLE,
            MONTH_SKETCHES_TABLE,
            month_partition_label,
            open_table,
        )
        from storage_tiers.tiers.cold_files import tag_cold_day

        todo = [d for d in stale_days(open_table(self.settings, DAY_SKETCHES_TABLE),
                                      open_table(self.settings, COLD_ROLLUPS_DAILY_TABLE)) if d != done]
        for day in list(reversed(todo))[:SKETCH_BACKFILL_DAYS]:
            built = build_day_sketches(self.settings, day, self.run_id)
            if built is not None:
                self._record_cold(built, "day_sketches", report)
        complete = (self.as_of - COMPLETE_AFTER).date()
        for month in compact_months(self.settings, complete, self.run_id):
            first = date.fromisoformat(month["partition"].removeprefix("month=") + "-01")
            tagged = tag_cold_day(self.settings, self.policy, DAY_SKETCHES_TABLE, first)
            report.add(self.audit.append(
                "compact_cold", "day_sketches", partition=month_partition_label(first), tier_from="cold",
                tier_to="cold", rows=month["rows"], bytes=0, checksum=f"sha256:{month['checksum']}",
                run_id=self.run_id, reason="a complete month's day sketches compacted into one file",
                details={"table": DAY_SKETCHES_TABLE.name, "table_version": month["version"],
                         "files_compacted": month["files_compacted"], "days": sorted(month["days"]),
                         "retagged": tagged}))
        # then each complete month whose merge is missing or older than its day sketches: totals read it instead
        for merged in merge_months(self.settings, complete, self.run_id):
            first = date.fromisoformat(merged["partition"].removeprefix("month=") + "-01")
            tagged = tag_cold_day(self.settings, self.policy, MONTH_SKETCHES_TABLE, first)
            report.add(self.audit.append(
                "compact_cold", "month_sketches", partition=merged["partition"], tier_from="cold", tier_to="cold",
                rows=merged["rows"], run_id=self.run_id,
                reason="a complete month's day sketches merged per tenant and value",
                details={"table": MONTH_SKETCHES_TABLE.name, "table_version": merged["version"],
                         "source": merged["source"], "retagged": tagged}))

    def warm_to_cold(self, day: date) -> DayReport:
        """Compact the day into cold, verify it from the lake, then delete its warm hours."""
        report = DayReport(day)
        end = day_start(day) + timedelta(days=1)
        if not self._past(end, "events", "warm"):
            report.skipped.append(f"dt={day}: within the warm horizon of events")
            return report
        sources = archive_sources(self.settings, self.fs, day)
        if sources:
            cold = build_cold_events(self.settings, self.fs, self.policy, day, self.run_id)
            assert cold is not None
            self._record_cold(cold, "events", report)
            daily = build_rollups_daily(self.settings, self.fs, self.policy, day, self.run_id)
            if daily is not None:
                self._record_cold(daily, "rollups_daily", report)
                self._build_sketches(day, report)
            problems = verify_cold_day(self.settings, COLD_EVENTS_TABLE, day, self.fs)
            problems += verify_cold_day(self.settings, COLD_ROLLUPS_DAILY_TABLE, day, self.fs)
            hour_rows = published(self.settings, COLD_EVENTS_TABLE, day) or {}
            for source in sources:
                held = int(hour_rows.get("hour_rows", {}).get(source["hour"], 0))
                if held != source["rows"]:
                    problems.append(f"cold/events dt={day} holds {held} rows of {source['hour']}, "
                                    f"the archive {source['rows']}")
            if problems:
                report.problems += [f"{p}; warm tier of dt={day} kept" for p in problems]
                return report
            hours = table_hours(self.settings, ARCHIVE_TABLE, day)
            for source in sources:
                hour = datetime.fromisoformat(source["hour"].replace("Z", "+00:00"))
                commit = self._delete_hour(ARCHIVE_TABLE, hour, source["rows"])
                report.add(self.audit.append(
                    "move", "events", partition=hour_partition(hour), tier_from="warm", tier_to="cold",
                    rows=source["rows"], bytes=hours.get(hour, {}).get("bytes", 0), checksum=source["checksum"],
                    run_id=self.run_id, reason="past the warm horizon; cold day verified",
                    details={"cold": f"{table_uri(self.settings, COLD_EVENTS_TABLE)}/dt={day}", **commit}))
            self._vacuum(ARCHIVE_TABLE)
        if self._past(end, "rollups_hourly", "warm"):
            self._drop_warm_rollups(day, report)
        return report

    def _delete_hour(self, table: WarmTable, hour: datetime, rows: int) -> dict[str, Any]:
        """One Delta delete commit removing the hour from a warm table; what the audit records of it."""
        metrics = delete_rows(self.settings, table, table.hour_predicate(hour), "move", hour_partition(hour),
                              {"rows": 0, "moved_rows": rows, "reason": "moved to the cold tier",
                               "run_id": self.run_id})
        return {"table": table.name, "table_version": metrics.get("version"),
                "deleted_rows": metrics.get("num_deleted_rows"), "removed_files": metrics.get("num_removed_files")}

    def _vacuum(self, table: WarmTable) -> None:
        """Remove files older than the history window that no recent version reads (time travel stays possible
        within the window)."""
        vacuum(self.settings, table, self.policy.history_window)

    def _drop_warm_rollups(self, day: date, report: DayReport) -> None:
        hours = list(table_hours(self.settings, ROLLUPS_HOURLY_TABLE, day))
        if not hours:
            return
        daily = published(self.settings, COLD_ROLLUPS_DAILY_TABLE, day)
        if daily is None:
            report.problems.append(f"rollups_hourly dt={day}: no daily rollups for the day; warm hours kept")
            return
        for hour in hours:
            events = self.warm_rollup_events(hour) or 0
            source = next((s for s in daily.get("sources", []) if s["hour"] == format_ts(hour)), None)
            if source is None or int(source.get("warm_events", -1)) != events:
                report.problems.append(f"rollups_hourly {hour_partition(hour)}: not in the daily rollups of dt={day}; "
                                       "kept")
                continue
            size = table_hours(self.settings, ROLLUPS_HOURLY_TABLE, day).get(hour, {}).get("bytes", 0)
            commit = self._delete_hour(ROLLUPS_HOURLY_TABLE, hour, events)
            report.add(self.audit.append(
                "move", "rollups_hourly", partition=hour_partition(hour), tier_from="warm", tier_to="cold",
                rows=events, bytes=size, run_id=self.run_id, reason="past the warm horizon; in the daily rollups",
                details={"cold": f"{table_uri(self.settings, COLD_ROLLUPS_DAILY_TABLE)}/dt={day}", **commit}))
        if open_table(self.settings, ROLLUPS_HOURLY_TABLE) is not None:
            self._vacuum(ROLLUPS_HOURLY_TABLE)
