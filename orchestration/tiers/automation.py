"""When the tiering runs by itself: once a day, each mover on the day that has just become due.

A day becomes due for ``rollups_daily`` when it is complete (yesterday), for ``hot_tier_drop`` when it
passes the shortest hot horizon, and for ``cold_tier`` when it passes the warm horizon; the schedule
asks for exactly those partitions (one run each). Days that were missed (scheduler down) are
backfilled from the UI: every mover is idempotent and does nothing for a day that is not due.
The purge runs an hour later, after the movers; the Delta tables' maintenance an hour after the purge.
"""

# No `from __future__ import annotations`: Dagster reads the annotations at load time.

from datetime import timedelta

import dagster as dg

from orchestration.hours import LOAD_SETTINGS
from orchestration.tiers.assets import cold_tier, hot_tier_drop, lake_maintenance, retention_purge, rollups_daily
from storage_tiers.policy import PolicyError, load_policy

tiers_daily = dg.define_asset_job(
    "tiers_daily",
    selection=dg.AssetSelection.assets(hot_tier_drop, rollups_daily, cold_tier),
    description="Move one UTC day through the tiers: drop verified hot hours, build daily rollups, compact into cold.",
)

retention_purge_job = dg.define_asset_job(
    "retention_purge_job",
    selection=dg.AssetSelection.assets(retention_purge),
    description="Purge data past its retention from every tier, except legal holds.",
)


def _due_days(tier: str, fallback: set[int]) -> set[int]:
    """The distinct horizons (days) of ``tier`` across the datasets: each is a day that becomes due daily."""
    try:
        policy = load_policy(LOAD_SETTINGS)
    except PolicyError:
        return fallback  # the runs themselves fail with the policy error
    return {spec.horizon.days for d in policy.datasets.values() for spec in d.tiers if spec.tier == tier} or fallback


@dg.schedule(job=tiers_daily, cron_schedule="30 1 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def tiers_schedule(context: dg.ScheduleEvaluationContext):  # Dagster's generator
    """At 01:30 UTC: daily rollups of yesterday, the hot drop of each day that just passed a hot horizon
    (7 and 90 days by default), the cold move of the day that just passed the warm horizon."""
    today = context.scheduled_execution_time.date()
    due = [(rollups_daily, 1)]
    due += [(hot_tier_drop, days + 1) for days in sorted(_due_days("hot", {7, 90}))]
    due += [(cold_tier, days + 1) for days in sorted(_due_days("warm", {365}))]
    for asset, back in due:
        key = (today - timedelta(days=back)).isoformat()
        yield dg.RunRequest(run_key=f"{asset.key.to_user_string()}-{key}", partition_key=key,
                            asset_selection=[asset.key])


@dg.schedule(job=retention_purge_job, cron_schedule="30 2 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def retention_purge_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """At 02:30 UTC, after the movers: the retention purge."""
    return dg.RunRequest(run_key=f"purge-{context.scheduled_execution_time.date()}")


lake_maintenance_job = dg.define_asset_job(
    "lake_maintenance_job",
    selection=dg.AssetSelection.assets(lake_maintenance),
    description="Compact, vacuum and checkpoint the lake's Delta tables.",
)


@dg.schedule(job=lake_maintenance_job, cron_schedule="30 3 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def lake_maintenance_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """At 03:30 UTC, after the purge (whose deletes leave rewritten hours): the tables' maintenance."""
    return dg.RunRequest(run_key=f"lake-maintenance-{context.scheduled_execution_time.date()}")
