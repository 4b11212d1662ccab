"""Retention purge: delete data past its tenant's retention from every tier, except what a legal hold covers.

A day of a tenant is past retention when the day ended at least ``retention_for(tenant)`` before
``as_of``. Partitions hold many tenants, so each candidate partition (a cold day, a warm hour, a hot
hour) is looked at per tenant: if every tenant in it is expired and unheld, the partition is deleted
whole; if only some are, it is rewritten without them (the cold Delta tables get one delete commit per
day, ``dt = … [AND tenant IN (…)]``, whose provenance is the day's updated one; the warm Delta tables one
delete commit per hour, ``dt = … AND hour = … [AND tenant IN (…)]``; the hot tier a synchronous
``ALTER TABLE … DELETE``). Held tenants are never in a delete's predicate. After the deletes each table is
vacuumed with no history window: an erasure must leave no file that holds the
purged rows, so time travel to versions before a purge ends there. Every deletion is one ``purge``
audit record (rows, bytes, tenants, and for the tables the commit's version and metrics). ``dry_run``
reports the same plan without touching anything or writing the audit.

Purged rows must not come back: they are also in the landing zone, from which a late event or a backfill
re-archives their hour. So before deleting anything the purge records an erasure per (tenant, hour or
day) it deletes (``common.erasures``), which the archive applies to every later run of that hour, and
after the tiers it rewrites the landing files that hold rows of any erased (tenant, hour), late ones
included (audited as dataset ``landing``).

Before deleting anything a purge checks that it may (``PurgeRefused`` otherwise): ``as_of`` is not in
the future (a future instant makes every unheld day look expired); the audit log verifies (holds are
read from it, and a purge must not add to a log that was altered); every legal-hold record is readable
(an unreadable one could be the hold that protects data); and the plan does not touch more than
``purge_max_share`` of the lake's days unless the caller confirmed it. The tenants of a partition are read
from its rows (the tenant column of its live files), so no partition is deleted blindly.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from batch.archive import content_checksum
from common import day_rollups, session_pieces
from common.erasures import Ranges, day_range, erased_tenants, hour_range, read_erasures, record_erasures, union
from common.events import format_ts
from common.hot_store import HotStore
from common.lake import (
    fs_path,
    hour_partition,
    lake_filesystem,
    landing_files_by_hour,
    purge_runs_path,
)
from common.lake_io import (
    day_start,
    parquet_bytes,
    publish,
    read_json,
    read_tables,
)
from common.lake_tables import (
    ARCHIVE_TABLE,
    COLD_EVENTS_TABLE,
    COLD_ROLLUPS_DAILY_TABLE,
    DAY_SKETCHES_TABLE,
    MONTH_SKETCHES_TABLE,
    ROLLUPS_HOURLY_TABLE,
    WarmTable,
    add_actions,
    delete_rows,
    file_days,
    open_table,
    partition_files,
    partition_stats,
    vacuum,
)
from common.restatements import announce_restated_hour
from common.settings import Settings
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.compliance.holds import HoldError, LegalHold, active_holds, is_held
from storage_tiers.policy import TierPolicy
from storage_tiers.tiers.cold_files import (
    COLD_SCHEMAS,
    published,
    read_day,
    table_hours,
    tag_cold_day,
)
from storage_tiers.tiers.cold_files import (
    content_checksum as cold_checksum,
)
from storage_tiers.tiers.movers import HOT_TABLES


@dataclass
class PurgeItem:
    dataset: str
    tier: str
    partition: str
    tenants: list[str]
    rows: int
    whole: bool  # the partition goes entirely (else it is rewritten without these tenants)
    bytes: int = 0

    @property
    def place(self) -> tuple[str, str, str]:
        return self.dataset, self.tier, self.partition


class PurgeRefused(RuntimeError):
    """The purge did not start; the message says why and what to do."""


FUTURE_SKEW = timedelta(minutes=5)  # clocks of the scheduler and this process may differ a little


@dataclass
class PurgeReport:
    as_of: datetime
    dry_run: bool
    items: list[PurgeItem] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # partitions/tenants kept because of a hold
    blocked: list[str] = field(default_factory=list)  # partitions not deleted because their content is unknown
    share: float = 0.0  # the share of the lake's days this purge touches
    vacuumed: dict[str, int] = field(default_factory=dict)  # warm table → files erased from storage
    recovered: list[PurgeItem] = field(default_factory=list)  # done by an interrupted purge, audited by this one

    @property
    def rows(self) -> int:
        return sum(i.rows for i in self.items)


def erasure_ranges(items: list[PurgeItem]) -> Ranges:
    """The (tenant, range) each deletion erases: a cold item its day, the others their hour."""
    ranges: dict[str, list[tuple[datetime, datetime]]] = {}
    for item in items:
        day = _day_of(item.partition)
        if day is None:
            continue
        if "/hour=" in item.partition:
            span = hour_range(day_start(day) + timedelta(hours=int(item.partition.rsplit("=", 1)[1])))
        else:
            span = day_range(day_start(day))
        for tenant in item.tenants:
            ranges.setdefault(tenant, []).append(span)
    return union(ranges)


def _day_of(partition: str) -> date | None:
    """The day of a partition label (``dt=2026-01-02`` or ``dt=2026-01-02/hour=05``)."""
    if not partition.startswith("dt="):
        return None
    try:
        return date.fromisoformat(partition[3:13])
    except ValueError:
        return None


class Purger:
    def __init__(
        self,
        settings: Settings,
        policy: TierPolicy,
        audit: AuditLog,
        as_of: datetime,
        store: HotStore | None = None,
        filesystem: pafs.FileSystem | None = None,
        run_id: str | None = None,
    ) -> None:
        self.settings, self.policy, self.audit, self.store = settings, policy, audit, store
        self.as_of = as_of
        self.fs = filesystem or lake_filesystem(settings)
        self.run_id = run_id
        self.purge_id = uuid.uuid4().hex  # this purge's plan, and its audit records' details.purge_id
        self.holds: list[LegalHold] = []
        self._vacuum_always = False  # an interrupted purge may have deleted without vacuuming
        self._interrupted: list[PurgeItem] = []  # items of interrupted purges (their landing files still count)

    def expired(self, tenant: str, day: date) -> bool:
        return day_start(day) + timedelta(days=1) <= self.as_of - self.policy.retention_for(tenant)

    def _candidate(self, day: date) -> bool:
        """Whether any tenant's data of ``day`` could be expired (the shortest retention has passed)."""
        return day_start(day) + timedelta(days=1) <= self.as_of - self.policy.shortest_retention

    def _split(self, tenants: dict[str, int], day: date, label: str, report: PurgeReport) -> list[str]:
        gone = []
        for tenant in sorted(tenants):
            if not self.expired(tenant, day):
                continue
            if is_held(self.holds, tenant, day):
                report.held.append(f"{label} tenant={tenant}")
                continue
            gone.append(tenant)
        return gone

    def _days_present(self) -> set[date]:
        days: set[date] = set()
        for table in (COLD_EVENTS_TABLE, COLD_ROLLUPS_DAILY_TABLE, ARCHIVE_TABLE, ROLLUPS_HOURLY_TABLE):
            delta = open_table(self.settings, table)
            if delta is not None:
                days.update(hour.date() for hour in partition_stats(delta, table))
        return days

    def check_allowed(self, now: datetime | None = None) -> None:
        """Refuse a future ``as_of`` and an audit log that does not verify; load the holds (every one readable)."""
        now = now or datetime.now(UTC)
        if self.as_of > now + FUTURE_SKEW:
            raise PurgeRefused(f"as_of {format_ts(self.as_of)} is in the future (now {format_ts(now)}): it would purge "
                               "data that is not yet past retention; purge as of now or an earlier instant")
        verification = self.audit.verify()
        if not verification.ok:
            raise PurgeRefused(f"the audit log does not verify ({verification.problems[0]}); nothing was purged: "
                               "run `lakehouse audit verify`, restore the log, then purge again")
        try:
            self.holds = active_holds(self.audit)
        except HoldError as exc:
            raise PurgeRefused(f"{exc}; nothing was purged") from exc

    def run(self, dry_run: bool = False, confirm_large: bool = False, now: datetime | None = None) -> PurgeReport:
        self.check_allowed(now)
        share = 0.0
        if not dry_run:
            plan = self._execute(PurgeReport(self.as_of, True), dry_run=True)
            present = self._days_present()
            touched = {_day_of(i.partition) for i in plan.items} & present
            share = len(touched) / len(present) if present else 0.0
            limit = self.settings.purge_max_share
            if share > limit and not confirm_large:
                raise PurgeRefused(
                    f"this purge would touch {len(touched)} of the lake's {len(present)} days ({share:.0%}), more "
                    f"than LAKEHOUSE_PURGE_MAX_SHARE={limit:g}; nothing was purged. Check the policy and as_of "
                    "(a dry run lists the plan), then confirm (`--confirm-large-purge`, or the tiers resource's "
                    "confirm_large_purge)")
            recovered = self._recover_interrupted(plan)
            # the plan and the erasures are recorded before anything is deleted: a purge stopped half-way leaves
            # rows that the next purge deletes (never rows that a re-archived hour brings back) and deletions
            # that the next purge audits (never deletions missing from the audit log)
            publish(self.fs, self._plan_path(self.purge_id), json.dumps({
                "purge_id": self.purge_id, "run_id": self.run_id, "as_of": format_ts(self.as_of),
                "items": [asdict(i) for i in plan.items]}).encode())
            record_erasures(self.settings, erasure_ranges(plan.items), self.fs)
        report = self._execute(PurgeReport(self.as_of, dry_run), dry_run)
        if not dry_run:
            record_erasures(self.settings, erasure_ranges(report.items), self.fs)
            report.recovered = recovered
            self.fs.delete_file(self._plan_path(self.purge_id))  # the run is complete
        report.share = share
        return report

    def _plan_path(self, purge_id: str) -> str:
        return f"{fs_path(purge_runs_path(self.settings))}/{purge_id}.json"

    def _recover_interrupted(self, plan: PurgeReport) -> list[PurgeItem]:
        """Audit what purges that stopped half-way deleted but did not record.

        A plan left behind is a run that did not finish. Each of its items is either still to do (its tenants
        are in this run's plan for the same partition: this run deletes and audits it), audited (a ``purge``
        record of that run for the partition), or done but not recorded: then it is audited now with the
        numbers of its plan, once, and the warm tables are vacuumed in case the run stopped before that.
        Purges run one at a time (the Dagster asset does): a plan of a purge still running would look
        interrupted."""
        root = fs_path(purge_runs_path(self.settings))
        infos = self.fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        left = [i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".json")]
        if not left:
            return []
        pending = {(i.place, t) for i in plan.items for t in i.tenants}
        audited = {((r.get("details") or {}).get("purge_id"),
                    (r.get("dataset"), r.get("tier_from"), r.get("partition")))
                   for r in self.audit.records(strict=True) if r.get("action") == "purge"}
        recovered = []
        for path in left:
            interrupted = read_json(self.fs, path) or {}
            for fields in interrupted.get("items", []):
                item = PurgeItem(**fields)
                self._interrupted.append(item)
                if (interrupted.get("purge_id"), item.place) in audited:
                    continue
                if any((item.place, t) in pending for t in item.tenants):
                    continue
                self._audit(item, item.tier, details={"recovered_from_purge": interrupted.get("purge_id"),
                                                      "recovered_from_run": interrupted.get("run_id"),
                                                      "note": "deleted by an interrupted purge, numbers from its plan"})
                recovered.append(item)
            self._vacuum_always = True
            self.fs.delete_file(path)
        return recovered

    def _execute(self, report: PurgeReport, dry_run: bool) -> PurgeReport:
        self._cold(COLD_EVENTS_TABLE, "events", report, dry_run)
        self._cold(COLD_ROLLUPS_DAILY_TABLE, "rollups_daily", report, dry_run)
        # after the daily rollups: a day's sketches are rows per tenant, so deleting the purged tenants' rows leaves
        # exactly what rebuilding them from the purged daily rollups would (and the day stays current)
        self._cold(DAY_SKETCHES_TABLE, "day_sketches", report, dry_run)
        self._month_sketches(report, dry_run)  # the months merged from those day sketches: merged again
        self._warm(ARCHIVE_TABLE, "events", report, dry_run)
        self._warm(ROLLUPS_HOURLY_TABLE, "rollups_hourly", report, dry_run)
        if self.store is not None:
            self._hot(report, dry_run)
        self._landing(report, dry_run)
        return report

    def _audit(self, item: PurgeItem, tier_from: str, checksum: str | None = None,
               details: dict[str, Any] | None = None) -> None:
        retention = {t: self.policy.retention_for(t).days for t in item.tenants}
        self.audit.append(
            "purge", item.dataset, partition=item.partition, tier_from=tier_from, rows=item.rows, bytes=item.bytes,
            checksum=checksum, run_id=self.run_id, reason="past retention, no legal hold",
            details={"tenants": item.tenants, "whole_partition": item.whole, "retention_days": retention,
                     "as_of": format_ts(self.as_of), "purge_id": self.purge_id, **(details or {})})

    # ------------------------------------------------------------------------------------- cold

    def _cold(self, table: WarmTable, dataset: str, report: PurgeReport, dry_run: bool) -> None:
        """Delete expired, unheld tenants' rows from a cold Delta table, one commit per day, then vacuum at once.

        Each delete commit carries the day's provenance as it is after the delete (rows, tenants, checksum, rows
        per hour, and the purges so far), so ``published`` and ``verify_cold_day`` keep working on the day."""
        delta = open_table(self.settings, table)
        if delta is None:
            return
        deleted = False
        for day in _table_days(delta, table):
            if not self._candidate(day):
                continue
            label = f"dt={day}"
            rows = read_day(self.settings, table, day, self.fs)
            tenants = _tenant_counts(rows)
            gone = self._split(tenants, day, f"{dataset} cold {label}", report)
            if not gone:
                continue
            whole = set(gone) == set(tenants)
            item = PurgeItem(dataset, "cold", label, gone, sum(tenants[t] for t in gone), whole)
            report.items.append(item)
            if dry_run:
                continue
            manifest = published(self.settings, table, day, delta) or {}
            kept = rows.filter(pc.invert(pc.is_in(rows["tenant"], pa.array(gone))))
            checksum = cold_checksum(kept, COLD_SCHEMAS[table.name])
            new = {k: v for k, v in manifest.items() if k not in ("version", "bytes")}
            new.update(rows=kept.num_rows, checksum=checksum, tenants=_tenant_counts(kept),
                       purged=[*manifest.get("purged", []), {"tenants": gone, "rows": item.rows,
                                                             "at": format_ts(self.as_of), "run_id": self.run_id}])
            if table is COLD_EVENTS_TABLE:
                counts: dict[str, int] = {}
                for hour in (pc.floor_temporal(kept["timestamp"], unit="hour").to_pylist() if kept.num_rows else []):
                    counts[format_ts(hour)] = counts.get(format_ts(hour), 0) + 1
                new["hour_rows"] = counts
            elif table is DAY_SKETCHES_TABLE:
                whole_days = kept.filter(pc.equal(kept["dimension"], "")) if kept.num_rows else kept
                new["events"] = int(pc.sum(whole_days["events"]).as_py() or 0) if kept.num_rows else 0
                daily_now = published(self.settings, COLD_ROLLUPS_DAILY_TABLE, day) or {}
                new["rollups_daily_checksum"] = daily_now.get("checksum")
                new["rollups_daily_version"] = daily_now.get("version")
            elif "events" in kept.column_names:
                new["events"] = int(pc.sum(kept["events"]).as_py() or 0)
            before = int(manifest.get("bytes", 0))
            predicate = table.day_predicate(day)  # (a table partitioned by month: the month's file is rewritten)
            if not whole:
                predicate += " AND tenant IN (" + ", ".join(_sql_string(t) for t in gone) + ")"
            metrics = delete_rows(self.settings, table, predicate, "purge", label, new)
            deleted = True
            after = published(self.settings, table, day)
            item.bytes = before - int((after or {}).get("bytes", 0))
            tagged = tag_cold_day(self.settings, self.policy, table, day) if after else []  # new objects: no tags
            self._audit(item, "cold", f"sha256:{checksum}", details={
                "table": table.name, "table_version": metrics.get("version"),
                "deleted_rows": metrics.get("num_deleted_rows"), "removed_files": metrics.get("num_removed_files"),
                "added_files": metrics.get("num_added_files"), "retagged": tagged})
        if deleted:
            report.vacuumed[table.name] = len(vacuum(self.settings, table, timedelta(0)))

    def _month_sketches(self, report: PurgeReport, dry_run: bool) -> None:
        """Merge again each month whose merge (``storage_tiers.tiers.month_sketches``) holds a tenant the purge just
        deleted day sketches of, from the day sketches as they are now (the purged tenants' rows go, held tenants'
        stay), one ``purge`` commit and audit record per month; then vacuum, so no file keeps the purged rows."""
        from storage_tiers.tiers.month_sketches import current_months, merge_month, merge_sources

        delta = open_table(self.settings, MONTH_SKETCHES_TABLE)
        if delta is None:
            return
        merged = merge_sources(delta)
        gone: dict[str, set[str]] = {}
        for item in [*report.items, *self._interrupted]:
            day = _day_of(item.partition)
            if item.dataset == "day_sketches" and day is not None and f"{day:%Y-%m}" in merged:
                gone.setdefault(f"{day:%Y-%m}", set()).update(item.tenants)
        # a merge older than its month's day sketches (a purge stopped before merging again) may hold tenants they
        # no longer have: those go too
        stale = set(merged) - current_months(open_table(self.settings, DAY_SKETCHES_TABLE), delta)
        deleted = False
        for month in sorted(set(gone) | stale):
            counts = self._month_tenants(MONTH_SKETCHES_TABLE, month, delta)
            tenants = gone.get(month, set())
            if month in stale:
                tenants = tenants | (set(counts) - set(self._month_tenants(DAY_SKETCHES_TABLE, month)))
            item = PurgeItem("month_sketches", "cold", f"month={month}", sorted(tenants & set(counts)),
                             sum(counts.get(t, 0) for t in tenants), False)
            if not item.tenants:
                continue
            report.items.append(item)
            if dry_run:
                continue
            result = merge_month(self.settings, date.fromisoformat(f"{month}-01"), self.run_id, operation="purge")
            deleted = True
            tagged = tag_cold_day(self.settings, self.policy, MONTH_SKETCHES_TABLE,
                                  date.fromisoformat(f"{month}-01"))
            self._audit(item, "cold", details={"table": MONTH_SKETCHES_TABLE.name,
                                               "table_version": (result or {}).get("version"),
                                               "merged_from": (result or {}).get("source"), "retagged": tagged})
        if deleted or (self._vacuum_always and not dry_run):
            report.vacuumed[MONTH_SKETCHES_TABLE.name] = len(vacuum(self.settings, MONTH_SKETCHES_TABLE, timedelta(0)))

    def _month_tenants(self, table: WarmTable, month: str, delta: Any | None = None) -> dict[str, int]:
        """Rows per tenant of one month of a table partitioned by month (its live files)."""
        files = [f for f in partition_files(self.settings, table, delta=delta) if f"/month={month}/" in f]
        rows = read_tables(self.fs, [fs_path(f) for f in files]) if files else None
        return _tenant_counts(rows) if rows is not None else {}

    # ------------------------------------------------------------------------------------- warm

    def _hour_tenants(self, files: list[str]) -> dict[str, int]:
        table = read_tables(self.fs, [fs_path(f) for f in files]) if files else None
        if table is None or table.num_rows == 0:
            return {}
        grouped = table.group_by("tenant").aggregate([([], "count_all")])
        return dict(zip(grouped["tenant"].to_pylist(), grouped["count_all"].to_pylist(), strict=True))

    def _warm(self, table: WarmTable, dataset: str, report: PurgeReport, dry_run: bool) -> None:
        """Delete expired, unheld tenants' rows from a warm Delta table, one commit per hour, then vacuum at once."""
        delta = open_table(self.settings, table)
        if delta is None:
            return
        days = sorted({hour.date() for hour in partition_stats(delta, table)})
        deleted = False
        for day in days:
            if not self._candidate(day):
                continue
            for hour, entry in table_hours(self.settings, table, day, delta).items():
                tenants = self._hour_tenants(entry["files"])
                gone = self._split(tenants, day, f"{dataset} warm {hour_partition(hour)}", report)
                if not gone:
                    continue
                whole = set(gone) == set(tenants)
                item = PurgeItem(dataset, "warm", hour_partition(hour), gone, sum(tenants[t] for t in gone), whole)
                report.items.append(item)
                if dry_run:
                    continue
                predicate = table.hour_predicate(hour)
                if not whole:
                    predicate += " AND tenant IN (" + ", ".join(_sql_string(t) for t in gone) + ")"
                provenance: dict[str, Any] = {"tenants": gone, "deleted_rows": item.rows, "run_id": self.run_id,
                                              "reason": "past retention, no legal hold"}
                if table is ARCHIVE_TABLE:  # what the hour holds after the delete, for verify_hour
                    checksum, kept = content_checksum(self.settings, entry["files"], without=gone)
                    provenance |= {"rows": kept, "checksum": checksum}
                metrics = delete_rows(self.settings, table, predicate, "purge", hour_partition(hour), provenance)
                deleted = True
                after = table_hours(self.settings, table, day).get(hour, {"bytes": 0, "files": []})
                item.bytes = entry["bytes"] - after["bytes"]
                self._audit(item, "warm", provenance.get("checksum"), details={
                    "table": table.name, "table_version": metrics.get("version"),
                    "deleted_rows": metrics.get("num_deleted_rows"),
                    "removed_files": metrics.get("num_removed_files"), "added_files": metrics.get("num_added_files")})
        if (deleted or self._vacuum_always) and not dry_run:
            report.vacuumed[table.name] = len(vacuum(self.settings, table, timedelta(0)))

    # ---------------------------------------------------------------------------------- landing

    def _landing(self, report: PurgeReport, dry_run: bool) -> None:
        """Rewrite the landing files that hold rows of an erased (tenant, hour): this purge's and earlier ones'
        (a late event landed since). The files keep their names, so the stream's commit log still lists them and
        the late-landing sensor sees nothing new; the archive leaves such rows out anyway (``common.erasures``)."""
        now = erasure_ranges([*report.items, *self._interrupted])
        erasures = union(read_erasures(self.settings, self.fs), now)
        if not erasures:
            return
        # Older erased hours were rewritten by the purge that erased them, and no event older than the ingestion's
        # maximum age can land since: only this purge's hours and the recent ones are read again.
        late_until = self.as_of - timedelta(days=self.settings.ingest_max_age_days + 1)
        for hour, files in landing_files_by_hour(self.settings, self.fs).items():
            erased = erased_tenants(erasures, hour)
            if not erased or (hour < late_until and not erased_tenants(now, hour)):
                continue
            gone = pa.array(erased, pa.string())
            touched: list[str] = []
            counts: dict[str, int] = {}
            for path in files:
                tenants = pq.read_table(fs_path(path), columns=["tenant"], filesystem=self.fs)["tenant"]
                hit = tenants.filter(pc.is_in(tenants.cast(pa.string()), gone))
                if len(hit):
                    touched.append(path)
                    for tenant in hit.to_pylist():
                        counts[tenant] = counts.get(tenant, 0) + 1
            if not touched:
                continue
            item = PurgeItem("landing", "landing", hour_partition(hour), sorted(counts), sum(counts.values()), False)
            report.items.append(item)
            if dry_run:
                continue
            for path in touched:
                table = pq.read_table(fs_path(path), filesystem=self.fs)
                before = self.fs.get_file_info(fs_path(path)).size or 0
                kept = table.filter(pc.invert(pc.is_in(table["tenant"].cast(pa.string()), gone)))
                body = parquet_bytes(kept, "zstd")
                publish(self.fs, fs_path(path), body)
                item.bytes += before - len(body)
            self._audit(item, "landing", details={"files": touched})

    # -------------------------------------------------------------------------------------- hot

    def _hot(self, report: PurgeReport, dry_run: bool) -> None:
        assert self.store is not None
        cutoff = self.as_of - self.policy.shortest_retention
        erased_days: set[date] = set()
        for table, (dataset, hour_expr, measure) in HOT_TABLES.items():
            rows = self.store.query_arrow(
                f"SELECT toUnixTimestamp({hour_expr}) AS h, tenant, {measure} AS n FROM {table} "  # fixed names
                f"WHERE {hour_expr} < {{cutoff:DateTime('UTC')}} GROUP BY h, tenant ORDER BY h, tenant",
                {"cutoff": cutoff.replace(tzinfo=None)},
            ).to_pylist()
            by_hour: dict[datetime, dict[str, int]] = {}
            for row in rows:
                by_hour.setdefault(datetime.fromtimestamp(int(row["h"]), UTC), {})[row["tenant"]] = int(row["n"])
            for aware, tenants in by_hour.items():
                gone = self._split(tenants, aware.date(), f"{table} hot {hour_partition(aware)}", report)
                if not gone:
                    continue
                whole = set(gone) == set(tenants)
                item = PurgeItem(dataset, "hot", hour_partition(aware), gone, sum(tenants[t] for t in gone), whole)
                report.items.append(item)
                if dry_run:
                    continue
                params: dict[str, Any] = {"hour": aware.replace(tzinfo=None)}
                if whole:
                    self.store.command(f"ALTER TABLE {table} DROP PARTITION {{hour:DateTime('UTC')}}", params)
                else:
                    params["tenants"] = gone
                    self.store.command(
                        f"ALTER TABLE {table} DELETE WHERE {hour_expr} = {{hour:DateTime('UTC')}} "
                        "AND tenant IN {tenants:Array(String)} SETTINGS mutations_sync = 2", params)
                if table == "events_raw":  # the session pieces are a copy of these rows: they go with them
                    session_pieces.forget(self.store, aware, None if whole else gone)
                if table == "rollups_1h":  # so are the day copies (common.day_rollups): the rows go from them too
                    day_rollups.erase(self.store, aware, None if whole else gone)
                    erased_days.add(aware.date())
                self._audit(item, "hot", details={"table": table})
        for day in sorted(erased_days):  # once per day, after all its hours: the rest of the day copied again
            day_rollups.rebuild(self.store, day)


def _tenant_counts(rows: pa.Table) -> dict[str, int]:
    if rows.num_rows == 0:
        return {}
    grouped = rows.group_by("tenant").aggregate([([], "count_all")])
    return dict(zip(grouped["tenant"].to_pylist(), grouped["count_all"].to_pylist(), strict=True))


def announce_purged_hours(redis_url: str, report: PurgeReport) -> int:
    """Announce every purged (tenant, hour) as a restatement, so the API drops cached answers that still hold
    the purged rows (they would otherwise be served until their TTL). Stops at the first failure (Redis down:
    the answers expire by their TTL)."""
    by_hour: dict[datetime, set[str]] = {}
    for tenant, spans in erasure_ranges(report.items).items():
        for start, end in spans:
            hour = start
            while hour < end:
                by_hour.setdefault(hour, set()).add(tenant)
                hour += timedelta(hours=1)
    announced = 0
    for hour, tenants in sorted(by_hour.items()):
        if announce_restated_hour(redis_url, tenants, hour) is None:
            break
        announced += 1
    return announced


def _sql_string(value: str) -> str:
    """A SQL string literal for a delete predicate (tenant names come from the data, not from users)."""
    return "'" + value.replace("'", "''") + "'"


def _table_days(delta: Any, table: WarmTable) -> list[date]:
    """The days a cold table's live files hold (a table partitioned by month: every day its files span)."""
    if not table.month_column:
        return [start.date() for start in partition_stats(delta, table)]
    first, last = file_days(add_actions(delta), table)
    days: set[date] = set()
    for lo, hi in zip(first.to_pylist(), last.to_pylist(), strict=True):
        while lo <= hi:
            days.add(lo)
            lo += timedelta(days=1)
    return sorted(days)
