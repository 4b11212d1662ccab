"""Tier movers and the retention purge as Dagster assets (daily partitions = UTC days of event time).

* ``hot_tier_drop``: the day's hot hours past their horizon, dropped once the lake holds their rows.
* ``rollups_daily``: the day's cold daily rollups from its warm hourly rollups (as soon as the day is complete).
* ``cold_tier``: the day compacted into the cold tier, verified, marked, then its warm hours deleted
  (only once the day is past the warm horizon; earlier it does nothing and says so).
* ``retention_purge`` (not partitioned): everything past retention, except legal holds, from every tier.
* ``lake_maintenance`` (not partitioned, after the purge): the Delta tables compacted, vacuumed beyond the
  history window and checkpointed (``storage_tiers/lake/maintenance.py``).

The logic is in ``storage_tiers`` (no Dagster there); these assets give it the run id, the policy,
the audit log and the hot store, and report what moved as metadata, including the audit log's head
(the anchor against truncation of the log, kept in Dagster's event log too). A step that could not
verify something fails with the list of what it kept and what to run first.
"""

# No `from __future__ import annotations`: Dagster reads the parameter annotations at load time.

import warnings
from datetime import date
from typing import Any

import dagster as dg

from common.lake import audit_log_path, cold_events_path, rollups_daily_path
from common.lake_tables import LAKE_TABLES
from orchestration.archive.assets import raw_events_archive
from orchestration.hours import LOAD_SETTINGS, OWNERS
from orchestration.resources import HotStoreResource, LakehouseResource
from orchestration.rollups.assets import rollups_hourly
from orchestration.tiers.resources import TiersResource
from storage_tiers.lake.maintenance import maintain_lake
from storage_tiers.tiers.cold_files import ColdBuildError
from storage_tiers.tiers.movers import DayReport, TierMover
from storage_tiers.tiers.purge import Purger, announce_purged_hours


def daily_partitions() -> dg.DailyPartitionsDefinition:
    """UTC days from ``LAKEHOUSE_TIERS_PARTITIONS_START`` up to yesterday."""
    start = LOAD_SETTINGS.tiers_partitions_start.strip()
    try:
        date.fromisoformat(start)
    except ValueError as exc:
        raise ValueError(f"LAKEHOUSE_TIERS_PARTITIONS_START={start!r} is not a date; use e.g. 2019-01-01") from exc
    return dg.DailyPartitionsDefinition(start_date=start, timezone="UTC", fmt="%Y-%m-%d")


DAILY = daily_partitions()
TAGS = {"layer": "tiers"}
# Lineage from the batch layer's hourly assets; days before LAKEHOUSE_PARTITIONS_START have no hourly partitions
# (a beta parameter of the pinned Dagster 1.13, exercised by the tiers integration test; its warning is silenced here).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    FROM_HOURS = dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)


def _mover(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tiers: TiersResource,
           store: Any = None) -> TierMover:
    return TierMover(lakehouse.settings(), tiers.policy(), tiers.audit(), tiers.instant(), store=store,
                     run_id=context.run.run_id, progress=context.log.info)


def _result(context: dg.AssetExecutionContext, tiers: TiersResource, reports: list[DayReport]) -> dg.MaterializeResult:
    actions = [a for r in reports for a in r.actions]
    problems = [p for r in reports for p in r.problems]
    head = tiers.audit().head() or {}
    metadata = {
        "as_of": dg.MetadataValue.text(tiers.instant().isoformat()),
        "actions": dg.MetadataValue.int(len(actions)),
        "rows_moved": dg.MetadataValue.int(sum(a["rows"] for a in actions)),
        "bytes_moved": dg.MetadataValue.int(sum(a["bytes"] for a in actions)),
        "audit_records": dg.MetadataValue.json(actions[:200]),
        "skipped": dg.MetadataValue.json([s for r in reports for s in r.skipped][:200]),
        "audit_head_seq": dg.MetadataValue.int(int(head.get("seq", 0))),
        "audit_head_hash": dg.MetadataValue.text(str(head.get("hash", ""))),
    }
    if problems:
        raise dg.Failure(
            description=f"{len(problems)} item(s) not moved because the next tier could not be verified:\n"
            + "\n".join(problems[:50]),
            metadata=metadata,
        )
    for line in (s for r in reports for s in r.skipped):
        context.log.debug(line)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    partitions_def=DAILY,
    group_name="tiers",
    owners=OWNERS,
    kinds={"clickhouse"},
    tags=TAGS,
    metadata={"tables": "events_raw, rollups_1m (7 days), rollups_1h (90 days) by default (tier policy)"},
)
def hot_tier_drop(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tiers: TiersResource, hot_store: HotStoreResource
) -> dg.MaterializeResult:
    """Drop the day's hot partitions past their horizon, each only after the lake is verified to hold its rows."""
    mover = _mover(context, lakehouse, tiers, hot_store.store())
    return _result(context, tiers, [mover.drop_hot(date.fromisoformat(context.partition_key))])


@dg.asset(
    deps=[dg.AssetDep(rollups_hourly, partition_mapping=FROM_HOURS)],
    partitions_def=DAILY,
    group_name="tiers",
    owners=OWNERS,
    kinds={"duckdb", "deltalake"},
    tags=TAGS,
    metadata={"location": dg.MetadataValue.path(rollups_daily_path(LOAD_SETTINGS)), "table": "cold/rollups_daily"},
)
def rollups_daily(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tiers: TiersResource
) -> dg.MaterializeResult:
    """Cold daily rollups of a complete day from its warm hourly rollups, checked against the archive hour by hour."""
    mover = _mover(context, lakehouse, tiers)
    try:
        report = mover.build_daily_rollups(date.fromisoformat(context.partition_key))
    except ColdBuildError as exc:
        raise dg.Failure(description=str(exc)) from exc
    return _result(context, tiers, [report])


@dg.asset(
    deps=[rollups_daily, dg.AssetDep(raw_events_archive, partition_mapping=FROM_HOURS)],
    partitions_def=DAILY,
    group_name="tiers",
    owners=OWNERS,
    kinds={"deltalake", "s3"},
    tags=TAGS,
    metadata={"location": dg.MetadataValue.path(cold_events_path(LOAD_SETTINGS)), "table": "cold/events"},
)
def cold_tier(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tiers: TiersResource
) -> dg.MaterializeResult:
    """Compact a day past the warm horizon into cold, verify it from the lake, mark it cold, delete its warm hours."""
    mover = _mover(context, lakehouse, tiers)
    try:
        report = mover.warm_to_cold(date.fromisoformat(context.partition_key))
    except ColdBuildError as exc:
        raise dg.Failure(description=str(exc)) from exc
    return _result(context, tiers, [report])


@dg.asset(
    deps=[cold_tier, hot_tier_drop],
    group_name="tiers",
    owners=OWNERS,
    kinds={"parquet", "clickhouse"},
    tags=TAGS,
    metadata={"audit_log": dg.MetadataValue.path(audit_log_path(LOAD_SETTINGS))},
)
def retention_purge(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tiers: TiersResource, hot_store: HotStoreResource
) -> dg.MaterializeResult:
    """Delete what is past its tenant's retention from every tier, except data under a legal hold."""
    purger = Purger(lakehouse.settings(), tiers.policy(), tiers.audit(), tiers.instant(), store=hot_store.store(),
                    run_id=context.run.run_id)
    report = purger.run(confirm_large=tiers.confirm_large_purge)  # PurgeRefused fails the run before any delete
    announced = announce_purged_hours(lakehouse.settings().redis_url, report)
    head = tiers.audit().head() or {}
    return dg.MaterializeResult(metadata={
        "as_of": dg.MetadataValue.text(report.as_of.isoformat()),
        "partitions_purged": dg.MetadataValue.int(len(report.items)),
        "rows_purged": dg.MetadataValue.int(report.rows),
        "bytes_purged": dg.MetadataValue.int(sum(i.bytes for i in report.items)),
        "kept_by_legal_hold": dg.MetadataValue.json(report.held[:200]),
        "not_deleted_content_unknown": dg.MetadataValue.json(report.blocked[:200]),
        "share_of_lake_days": dg.MetadataValue.float(report.share),
        "purged": dg.MetadataValue.json([{"dataset": i.dataset, "tier": i.tier, "partition": i.partition,
                                          "tenants": i.tenants, "rows": i.rows} for i in report.items[:200]]),
        "audit_head_seq": dg.MetadataValue.int(int(head.get("seq", 0))),
        "audit_head_hash": dg.MetadataValue.text(str(head.get("hash", ""))),
        "cache_hours_announced": dg.MetadataValue.int(announced),
    })


@dg.asset_check(asset=retention_purge, blocking=False, description=(
    "The audit log's hash chain and anchor are intact (AuditLog.verify): no record altered, removed or reordered. "
    "Fails naming each problem by seq."))
def audit_log_intact(tiers: TiersResource) -> dg.AssetCheckResult:
    result = tiers.audit().verify()
    return dg.AssetCheckResult(
        passed=result.ok,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"records": dg.MetadataValue.int(result.records),
                  "problems": dg.MetadataValue.json(result.problems[:100]),
                  "head_seq": dg.MetadataValue.int(int((result.head or {}).get("seq", 0)))},
    )


@dg.asset(
    deps=[retention_purge],
    group_name="tiers",
    owners=OWNERS,
    kinds={"deltalake", "parquet"},
    tags=TAGS,
    metadata={"tables": ", ".join(LAKE_TABLES)},
)
def lake_maintenance(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                     tiers: TiersResource) -> dg.MaterializeResult:
    """Compact the Delta tables' small files, vacuum files older than the history window, write checkpoints."""
    history = tiers.policy().history_window
    results = maintain_lake(lakehouse.settings(), history=history)
    for result in results:
        context.log.info(f"{result.table}: {result.files_before} → {result.files_after} files, "
                         f"{result.files_vacuumed} vacuumed, checkpoint at {result.checkpoint_version}")
    metadata: dict[str, Any] = {
        "files_before": dg.MetadataValue.int(sum(r.files_before for r in results)),
        "files_after": dg.MetadataValue.int(sum(r.files_after for r in results)),
        "files_vacuumed": dg.MetadataValue.int(sum(r.files_vacuumed for r in results)),
        "bytes_after": dg.MetadataValue.int(sum(r.bytes_after for r in results)),
        "history_hours": dg.MetadataValue.int(int(history.total_seconds() // 3600)),
        "tables": dg.MetadataValue.json([r.as_dict() for r in results]),
    }
    for result in results:
        metadata[f"{result.table}/version"] = dg.MetadataValue.int(result.version_after or 0)
    return dg.MaterializeResult(metadata=metadata)
