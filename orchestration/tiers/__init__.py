"""The tiers domain: hot → warm → cold movers per day, the retention purge, the Delta tables' maintenance, and
their schedules (storage_tiers/)."""

from __future__ import annotations

import dagster as dg

from orchestration.tiers.assets import (
    audit_log_intact,
    cold_tier,
    hot_tier_drop,
    lake_maintenance,
    retention_purge,
    rollups_daily,
)
from orchestration.tiers.automation import (
    lake_maintenance_job,
    lake_maintenance_schedule,
    retention_purge_job,
    retention_purge_schedule,
    tiers_daily,
    tiers_schedule,
)

defs = dg.Definitions(
    assets=[hot_tier_drop, rollups_daily, cold_tier, retention_purge, lake_maintenance],
    asset_checks=[audit_log_intact],
    jobs=[tiers_daily, retention_purge_job, lake_maintenance_job],
    schedules=[tiers_schedule, retention_purge_schedule, lake_maintenance_schedule],
)
