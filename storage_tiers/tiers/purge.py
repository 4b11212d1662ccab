"""Retention purge: delete data past its tenant's retention from every tier, except what a legal hold covers.

A day of a tenant is past retention when the day ended at least ``retention_for(tenant)`` before
``as_of``. Partitions hold many tenants, so each candidate partition (a cold day, a warm hour, a hot
hour) is looked at per tenant: if every tenant in it is expired and unheld, the partition is deleted
whole; if only some are, it is rewritten without them (cold and warm files get a new manifest; the hot
tier gets a synchronous ``ALTER TABLE … DELETE``). Every deletion is one ``purge`` audit record (rows,
bytes, tenants). ``dry_run`` reports the same plan without touching anything or writing the audit.

Before deleting anything a purge checks that it may (``PurgeRefused`` otherwise): ``as_of`` is not in
the future (a future instant makes every unheld day look expired); the audit log verifies (holds are
read from it, and a purge must not add to a log that was altered); every legal-hold record is readable
(an unreadable one could be the hold that protects data); and the plan does not touch more than
``purge_max_share`` of the lake's days unless the caller confirmed it. A cold day without a manifest
(tenants unknown) is never deleted: it is reported in ``PurgeReport.blocked``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from batch.archive import content_checksum
from common.events import EVENT_ARROW_SCHEMA, format_ts
from common.hot_store import HotStore
from common.lake import (
    MANIFEST_NAME,
    archive_path,
    cold_events_path,
    fs_path,
    hour_partition,
    lake_filesystem,
    lake_uri,
    rollups_daily_path,
    rollups_hourly_path,
)
from common.lake_io import (
    data_files,
    day_start,
    delete_folder,
    manifest_of,
    parquet_bytes,
    partition_days,
    partition_hours,
    publish,
    read_tables,
    sha256,
)
from common.settings import Settings
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.compliance.holds import HoldError, LegalHold, active_holds, is_held
from storage_tiers.policy import TierPolicy
from storage_tiers.tiers.cold_files import (
    EVENTS_SORT,
    HOURLY_SCHEMA,
    PART_NAME,
    ROLLUP_KEYS,
    day_folder,
    tag_cold_folder,
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

    @property
    def rows(self) -> int:
        return sum(i.rows for i in self.items)


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
        self.holds: list[LegalHold] = []

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
        for root in (cold_events_path(self.settings), rollups_daily_path(self.settings), archive_path(self.settings),
                     rollups_hourly_path(self.settings)):
            days.update(partition_days(self.fs, root))
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
        report = self._execute(PurgeReport(self.as_of, dry_run), dry_run)
        report.share = share
        return report

    def _execute(self, report: PurgeReport, dry_run: bool) -> PurgeReport:
        self._cold(cold_events_path(self.settings), "events", report, dry_run, EVENTS_SORT)
        self._cold(rollups_daily_path(self.settings), "rollups_daily", report, dry_run, ROLLUP_KEYS)
        self._warm_archive(report, dry_run)
        self._warm_rollups(report, dry_run)
        if self.store is not None:
            self._hot(report, dry_run)
        return report

    def _audit(self, item: PurgeItem, tier_from: str, checksum: str | None = None,
               details: dict[str, Any] | None = None) -> None:
        retention = {t: self.policy.retention_for(t).days for t in item.tenants}
        self.audit.append(
            "purge", item.dataset, partition=item.partition, tier_from=tier_from, rows=item.rows, bytes=item.bytes,
            checksum=checksum, run_id=self.run_id, reason="past retention, no legal hold",
            details={"tenants": item.tenants, "whole_partition": item.whole, "retention_days": retention,
                     "as_of": format_ts(self.as_of), **(details or {})})

    # ------------------------------------------------------------------------------------- cold

    def _cold(self, root: str, dataset: str, report: PurgeReport, dry_run: bool, sort_key: list[str]) -> None:
        for day in partition_days(self.fs, root):
            if not self._candidate(day):
                continue
            folder = day_folder(root, day)
            manifest = manifest_of(self.fs, folder)
            if manifest is None:  # whose data it holds is unknown: a held tenant's day must not go blindly
                report.blocked.append(f"{dataset} cold dt={day}: no manifest (tenants unknown), not deleted")
                continue
            tenants = manifest.get("tenants", {})
            gone = self._split(tenants, day, f"{dataset} cold dt={day}", report)
            if not gone:
                continue
            whole = set(gone) == set(tenants)
            rows = sum(tenants.get(t, 0) for t in gone)
            item = PurgeItem(dataset, "cold", f"dt={day}", gone, rows, whole)
            report.items.append(item)
            if dry_run:
                continue
            if whole:
                item.bytes = delete_folder(self.fs, folder)
                self._audit(item, "cold", manifest.get("sha256"))
                continue
            table = read_tables(self.fs, [f"{folder}/{manifest['file']}"])
            assert table is not None
            kept = table.filter(pc.invert(pc.is_in(table["tenant"], pa.array(gone))))
            body = parquet_bytes(kept, manifest.get("compression", "zstd"), sort_key)
            publish(self.fs, f"{folder}/{PART_NAME}", body)
            new = dict(manifest)
            new.update(rows=kept.num_rows, bytes=len(body), sha256=sha256(body),
                       tenants={t: n for t, n in tenants.items() if t not in gone},
                       purged=[*manifest.get("purged", []), {"tenants": gone, "rows": rows, "at": format_ts(self.as_of),
                                                             "run_id": self.run_id}])
            if "hour_rows" in manifest:
                hours = pc.floor_temporal(kept["timestamp"], unit="hour").to_pylist() if kept.num_rows else []
                counts: dict[str, int] = {}
                for hour in hours:
                    counts[format_ts(hour)] = counts.get(format_ts(hour), 0) + 1
                new["hour_rows"] = counts
            if "events" in manifest and "events" in kept.column_names:
                new["events"] = int(pc.sum(kept["events"]).as_py() or 0)
            publish(self.fs, f"{folder}/{MANIFEST_NAME}", (json.dumps(new, indent=2) + "\n").encode())
            tagged = tag_cold_folder(self.settings, self.policy, folder)  # a rewritten S3 object has no tags
            item.bytes = int(manifest["bytes"]) - len(body)
            self._audit(item, "cold", f"sha256:{new['sha256']}", details={"retagged": tagged})

    # ------------------------------------------------------------------------------------- warm

    def _hour_tenants(self, files: list[str]) -> tuple[pa.Table | None, dict[str, int]]:
        table = read_tables(self.fs, files) if files else None
        if table is None or table.num_rows == 0:
            return table, {}
        grouped = table.group_by("tenant").aggregate([([], "count_all")])
        return table, dict(zip(grouped["tenant"].to_pylist(), grouped["count_all"].to_pylist(), strict=True))

    def _warm_archive(self, report: PurgeReport, dry_run: bool) -> None:
        root = archive_path(self.settings)
        for day in partition_days(self.fs, root):
            if not self._candidate(day):
                continue
            for hour in partition_hours(self.fs, root, day):
                folder = f"{fs_path(root)}/{hour_partition(hour)}"
                manifest = manifest_of(self.fs, folder)
                files = [f"{folder}/{f['path']}" for f in (manifest or {}).get("files", [])] or \
                    data_files(self.fs, folder)
                table, tenants = self._hour_tenants(files)
                label = f"events warm {hour_partition(hour)}"
                gone = self._split(tenants, day, label, report)
                if not gone and (tenants or manifest is not None):
                    continue
                whole = set(gone) == set(tenants)
                item = PurgeItem("events", "warm", hour_partition(hour), gone, sum(tenants[t] for t in gone), whole)
                report.items.append(item)
                if dry_run:
                    continue
                if whole:
                    item.bytes = delete_folder(self.fs, folder)
                    self._audit(item, "warm", (manifest or {}).get("checksum"))
                    continue
                assert table is not None
                kept = table.filter(pc.invert(pc.is_in(table["tenant"], pa.array(gone))))
                item.bytes = self._rewrite_archive_hour(folder, hour, manifest or {}, kept, files)
                self._audit(item, "warm", (manifest_of(self.fs, folder) or {}).get("checksum"))

    def _rewrite_archive_hour(self, folder: str, hour: datetime, manifest: dict[str, Any], kept: pa.Table,
                              old_files: list[str]) -> int:
        """Publish the hour without the purged rows: new data file, then a new manifest, then delete the old files.

        The content checksum is recomputed the archive's way (``batch.archive``) so ``verify_hour`` still holds.
        """
        kept = kept.select(EVENT_ARROW_SCHEMA.names).cast(EVENT_ARROW_SCHEMA).sort_by(
            [(c, "ascending") for c in EVENTS_SORT])
        name = f"part-purge-{uuid.uuid4().hex}-00000.zstd.parquet"
        body = parquet_bytes(kept, "zstd", EVENTS_SORT)
        publish(self.fs, f"{folder}/{name}", body)
        checksum, _rows = content_checksum(self.settings, [lake_uri(self.fs, f"{folder}/{name}")])
        times = kept["timestamp"]
        bounds = pc.min_max(times) if kept.num_rows else None
        low = format_ts(bounds["min"].as_py()) if bounds else None
        high = format_ts(bounds["max"].as_py()) if bounds else None
        new = dict(manifest)
        new.update(rows=kept.num_rows, bytes=len(body), checksum=checksum,
                   min_event_time=low, max_event_time=high,
                   files=[{"path": name, "rows": kept.num_rows, "bytes": len(body), "sha256": sha256(body),
                           "min_event_time": low, "max_event_time": high}],
                   purged=[*manifest.get("purged", []), {"run_id": self.run_id, "at": format_ts(self.as_of)}])
        publish(self.fs, f"{folder}/{MANIFEST_NAME}", (json.dumps(new, indent=2) + "\n").encode())
        removed = 0
        for path in old_files:
            info = self.fs.get_file_info(path)
            removed += info.size or 0
            self.fs.delete_file(path)
        return removed - len(body)

    def _warm_rollups(self, report: PurgeReport, dry_run: bool) -> None:
        root = rollups_hourly_path(self.settings)
        for day in partition_days(self.fs, root):
            if not self._candidate(day):
                continue
            for hour in partition_hours(self.fs, root, day):
                folder = f"{fs_path(root)}/{hour_partition(hour)}"
                files = data_files(self.fs, folder)
                table, tenants = self._hour_tenants(files)
                gone = self._split(tenants, day, f"rollups_hourly warm {hour_partition(hour)}", report)
                if not gone:
                    continue
                whole = set(gone) == set(tenants)
                item = PurgeItem("rollups_hourly", "warm", hour_partition(hour), gone,
                                 sum(tenants[t] for t in gone), whole)
                report.items.append(item)
                if dry_run:
                    continue
                if whole:
                    item.bytes = delete_folder(self.fs, folder)
                else:
                    assert table is not None
                    kept = table.filter(pc.invert(pc.is_in(table["tenant"], pa.array(gone))))
                    body = parquet_bytes(kept.select(HOURLY_SCHEMA.names).cast(HOURLY_SCHEMA), "zstd")
                    publish(self.fs, f"{folder}/part-purge-{uuid.uuid4().hex}.parquet", body)
                    before = sum(self.fs.get_file_info(p).size or 0 for p in files)
                    for path in files:
                        self.fs.delete_file(path)
                    item.bytes = before - len(body)
                self._audit(item, "warm")

    # -------------------------------------------------------------------------------------- hot

    def _hot(self, report: PurgeReport, dry_run: bool) -> None:
        assert self.store is not None
        cutoff = self.as_of - self.policy.shortest_retention
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
                self._audit(item, "hot", details={"table": table})
