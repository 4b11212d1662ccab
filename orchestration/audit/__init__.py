"""The audit domain: the compliance report of the tiers and the retention compliance check (storage_tiers/)."""

from __future__ import annotations

import dagster as dg

from orchestration.audit.compliance import (
    compliance_audit,
    compliance_audit_report,
    compliance_audit_schedule,
    retention_compliance,
)

defs = dg.Definitions(
    assets=[compliance_audit_report],
    asset_checks=[retention_compliance],
    jobs=[compliance_audit],
    schedules=[compliance_audit_schedule],
)
