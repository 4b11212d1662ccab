"""``rollups_hourly``: the exact recompute of one hour from the archive, restated into the hot tier.

PySpark rolls the archived hour up per minute and per hour (``batch.hourly.recompute_hour``) and
writes the hourly rollups as the warm tier's Parquet; ``batch.restate.restate_hour`` then replaces
the hour in the hot tier (events_raw, rollups_1m, rollups_1h) atomically, so dashboards switch from
the speed layer's numbers to the exact ones, late events included. Before the swap it measures how
far the speed layer was off per tenant: the ``stream_batch_drift`` check, reported with the asset
because the drift only exists at that moment (after the swap, stream and batch rows are the same).
"""

# No `from __future__ import annotations` in this module: Dagster reads the annotations of the
# context and resource parameters when the definitions load, and needs real types, not strings.

import time
from typing import Any

import dagster as dg

from batch.archive import archived_hour
from batch.hourly import recompute_hour
from batch.restate import Restatement, RestatementRefused, TenantDrift, restate_hour
from common.lake import hour_partition, rollups_hourly_path
from common.restatements import announce_restated_hour
from orchestration.archive.assets import raw_events_archive
from orchestration.closed_hours import ALLOW_REMOVALS_TAG, require_closed_hour, tagged
from orchestration.hours import HOURLY, LOAD_SETTINGS, OWNERS, hourly_check_spec, partition_hour
from orchestration.resources import HotStoreResource, LakehouseResource, SparkResource
from storage_tiers.compliance.audit_log import AuditLog

DRIFT_CHECK = "stream_batch_drift"
DRIFT_TABLE_ROWS = 50  # tenants shown in the drift table, worst first


@dg.asset(
    deps=[raw_events_archive],
    partitions_def=HOURLY,
    group_name="rollups",
    owners=OWNERS,
    kinds={"spark", "clickhouse", "deltalake"},
    tags={"layer": "batch"},
    metadata={
        "warm_location": dg.MetadataValue.path(rollups_hourly_path(LOAD_SETTINGS)),
        "warm_format": "Delta table partitioned by dt, hour_of_day (one commit per hour)",
        "hot_tables": "events_raw, rollups_1m, rollups_1h (the hour's partition, replaced atomically)",
    },
    check_specs=[
        hourly_check_spec(
            DRIFT_CHECK,
            asset="rollups_hourly",
            description=(
                "How far the speed layer's event count was from the exact one, per tenant, for this hour. "
                "Warns past LAKEHOUSE_DRIFT_MAX_ERROR (5 % by default). A warning, not an error: when it is "
                "measured the restatement has already put the exact numbers in the hot tier, so dashboards are "
                "right; the drift says how wrong they were before (mostly events later than the watermark, which "
                "only the batch layer counts) and is worth a look when it grows, not a reason to fail the run."
            ),
        )
    ],
)
def rollups_hourly(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    spark: SparkResource,
    hot_store: HotStoreResource,
) -> dg.MaterializeResult:
    """Exact rollups of one UTC hour from the archive: the warm Delta table, and the hour restated in the hot tier.

    Reads the hour's live files from the archive table's log, so it never sees a half-written archive.
    Refuses an open hour (orchestration/closed_hours.py) and a swap that would remove a counted event
    (batch/restate.py): an hour's numbers in the hot tier only grow, except through deduplication.
    Re-running the hour gives the same rollups and replaces the hot tier's hour with the same rows.
    """
    settings = lakehouse.settings()
    hour = partition_hour(context.partition_key)
    archived = archived_hour(settings, hour)
    if archived is None:
        raise dg.Failure(
            description=f"{context.partition_key} was never archived (no commit of the archive table wrote it): "
            "materialize raw_events_archive for this hour first (the hourly_batch job runs both)."
        )
    files = archived.files
    started = time.perf_counter()
    store = hot_store.store()  # fails fast, before Spark starts, when the hot tier is unreachable
    require_closed_hour(context, store, settings, hour)
    baseline = "previous restatement" if _restated_before(context) else "speed layer"
    recompute = recompute_hour(spark.session(), settings, hour, files, {
        "archive_version": archived.provenance.get("version"), "archive_checksum": archived.provenance.get("checksum"),
        "dagster_run_id": context.run.run_id})
    context.log.info(
        f"recomputed {context.partition_key}: {recompute.events:,} events → {recompute.minute_rollups.num_rows:,} "
        f"minute rows, {recompute.hourly_rows:,} hourly rows in {recompute.seconds:.1f}s; restating the hot tier"
    )
    allow_removals = tagged(context, ALLOW_REMOVALS_TAG)
    if allow_removals:
        context.log.warning(f"{ALLOW_REMOVALS_TAG}: the swap may remove events the hot tier counted")
    try:
        restatement = restate_hour(store, hour, recompute.minute_rollups, recompute.raw_events,
                                   allow_removals=allow_removals, session_gap_minutes=settings.session_gap_minutes)
    except RestatementRefused as exc:
        raise dg.Failure(description=str(exc), metadata={"missing_pairs": dg.MetadataValue.int(exc.missing)}) from exc
    # cached dashboard answers whose range includes this hour now hold the replaced numbers: announce the hour
    # (a Redis stream the API processes read and drop those answers from; never fails the run, entries expire
    # by their TTL anyway)
    announcement = announce_restated_hour(settings.redis_url, [d.tenant for d in restatement.drift], hour)
    AuditLog(settings).append(  # every restatement is in the retention audit (storage_tiers.compliance.audit_log)
        "restate", "rollups_hourly", partition=hour_partition(hour), tier_to="hot", rows=recompute.events,
        checksum=archived.provenance.get("checksum"), run_id=context.run.run_id,
        reason="batch recompute replaced the hour in the hot tier and the warm hourly rollups",
        details={"minute_rows": recompute.minute_rollups.num_rows, "hourly_rows": recompute.hourly_rows,
                 "max_drift": round(restatement.max_events_error, 6), "warm_version": recompute.warm_version,
                 "archive_version": archived.provenance.get("version")},
    )
    seconds = time.perf_counter() - started
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(recompute.hourly_rows),
            "events": dg.MetadataValue.int(recompute.events),
            "minute_rows": dg.MetadataValue.int(recompute.minute_rollups.num_rows),
            "hourly_rows": dg.MetadataValue.int(recompute.hourly_rows),
            "warm_path": dg.MetadataValue.path(recompute.warm_path),
            "warm_version": dg.MetadataValue.int(recompute.warm_version),
            "archive_files": dg.MetadataValue.int(len(files)),
            "restatement_announced": dg.MetadataValue.text(announcement or "no (Redis unreachable)"),
            "duration_s": dg.MetadataValue.float(round(seconds, 3)),
            "recompute_s": dg.MetadataValue.float(round(recompute.seconds, 3)),
            "tenants": dg.MetadataValue.int(len(restatement.drift)),
            "max_drift": dg.MetadataValue.float(round(restatement.max_events_error, 6)),
            "drift_baseline": dg.MetadataValue.text(baseline),
            "drift_by_tenant": drift_table(restatement),
        },
        check_results=[drift_check(restatement, settings.drift_max_error, baseline)],
    )


def _restated_before(context: dg.AssetExecutionContext) -> bool:
    """Whether this hour was restated before, so the drift compares batch with batch, not with the stream."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[context.partition_key]), limit=1
    )
    return bool(records.records)


def _worst_first(restatement: Restatement) -> list[TenantDrift]:
    return sorted(restatement.drift, key=lambda d: (-d.events_error, d.tenant))


def drift_table(restatement: Restatement) -> dg.MetadataValue:
    """Per tenant: stream vs batch events, users and revenue, and the relative error on events (worst first)."""
    records = [
        dg.TableRecord({
            "tenant": d.tenant,
            "stream_events": int(d.stream_events),
            "batch_events": int(d.batch_events),
            "events_error": round(d.events_error, 6),
            "stream_users": int(d.stream_users),
            "batch_users": int(d.batch_users),
            "stream_revenue": round(float(d.stream_revenue), 2),
            "batch_revenue": round(float(d.batch_revenue), 2),
        })
        for d in _worst_first(restatement)[:DRIFT_TABLE_ROWS]
    ]
    schema = dg.TableSchema(columns=[
        dg.TableColumn("tenant", "string"),
        dg.TableColumn("stream_events", "int"),
        dg.TableColumn("batch_events", "int"),
        dg.TableColumn("events_error", "float", description="|stream - batch| / batch"),
        dg.TableColumn("stream_users", "int"),
        dg.TableColumn("batch_users", "int"),
        dg.TableColumn("stream_revenue", "float"),
        dg.TableColumn("batch_revenue", "float"),
    ])
    return dg.MetadataValue.table(records=records, schema=schema)


def drift_check(restatement: Restatement, max_error: float, baseline: str) -> dg.AssetCheckResult:
    """Passes when no tenant's event count drifted more than ``max_error``; warns otherwise."""
    worst = _worst_first(restatement)
    over = [d for d in worst if d.events_error > max_error]
    metadata: dict[str, Any] = {
        "max_events_error": dg.MetadataValue.float(round(restatement.max_events_error, 6)),
        "threshold": dg.MetadataValue.float(max_error),
        "baseline": dg.MetadataValue.text(baseline),
        "tenants": dg.MetadataValue.int(len(worst)),
        "tenants_over_threshold": dg.MetadataValue.json([
            {"tenant": d.tenant, "stream_events": int(d.stream_events), "batch_events": int(d.batch_events),
             "events_error": round(d.events_error, 6)} for d in over[:DRIFT_TABLE_ROWS]
        ]),
    }
    if worst:
        metadata["worst_tenant"] = dg.MetadataValue.text(worst[0].tenant)
    return dg.AssetCheckResult(
        check_name=DRIFT_CHECK,
        passed=not over,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )
