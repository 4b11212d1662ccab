"""The reports domain: tenants' scheduled dashboard reports, found due by a sensor and delivered by a job."""

from __future__ import annotations

import dagster as dg

from orchestration.reports.jobs import report_schedules_sensor, scheduled_report

defs = dg.Definitions(jobs=[scheduled_report], sensors=[report_schedules_sensor])
