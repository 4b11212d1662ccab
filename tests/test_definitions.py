"""Dagster's definitions load and validate (what `dagster definitions validate -w workspace.yaml` checks).

Also the pure logic of the automation, without services: which hour the schedule picks for a tick,
and where the partitions start and end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster import Definitions

from common.settings import Settings
from orchestration.hours import complete_after, hourly_partitions, last_complete_hour, partition_hour, partition_key

ASSETS = {"raw_events_archive", "rollups_hourly"}
CHECKS = {
    ("raw_events_archive", "archive_rows_match_landing"),
    ("raw_events_archive", "archive_schema_conforms"),
    ("raw_events_archive", "archive_files_match_commit"),
    ("raw_events_archive", "archive_is_fresh"),
    ("rollups_hourly", "stream_batch_drift"),
}


@pytest.fixture(scope="module")
def defs() -> Definitions:
    from orchestration.definitions import defs

    return defs


def test_definitions_object_is_valid(defs: Definitions) -> None:
    assert isinstance(defs, Definitions)
    Definitions.validate_loadable(defs)
    assert defs.get_repository_def() is not None


def test_the_batch_layer_is_two_hourly_assets_in_their_domains(defs: Definitions) -> None:
    graph = defs.get_repository_def().asset_graph
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} >= ASSETS  # other domains add theirs
    archive = graph.get(dg.AssetKey("raw_events_archive"))
    rollups = graph.get(dg.AssetKey("rollups_hourly"))
    assert archive.group_name == "archive" and rollups.group_name == "rollups"
    assert rollups.parent_keys == {dg.AssetKey("raw_events_archive")}
    for node in (archive, rollups):
        assert isinstance(node.partitions_def, dg.HourlyPartitionsDefinition)
        assert node.owners and node.description
    assert archive.partitions_def == rollups.partitions_def


def test_checks_schedules_sensor_and_resources_are_defined(defs: Definitions) -> None:
    repo = defs.get_repository_def()
    checks = {(key.asset_key.to_user_string(), key.name) for key in repo.asset_graph.asset_check_keys}
    assert checks >= CHECKS
    assert {s.name for s in repo.schedule_defs} >= {"hourly_batch_schedule", "archive_freshness_schedule"}
    assert {s.name for s in repo.sensor_defs} == {"late_landing_sensor", "report_schedules_sensor"}
    assert {"lakehouse", "spark", "hot_store", "reports"} <= set(defs.resources or {})
    job = defs.resolve_job_def("hourly_batch")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == ASSETS
    job_checks = {(k.asset_key.to_user_string(), k.name) for k in job.asset_layer.asset_graph.asset_check_keys}
    assert job_checks >= CHECKS - {("raw_events_archive", "archive_is_fresh")}


def test_the_schedule_runs_after_the_watermark_for_the_last_complete_hour(defs: Definitions) -> None:
    from orchestration.automation import hourly_batch_schedule

    settings = Settings()
    schedule = defs.get_repository_def().get_schedule_def("hourly_batch_schedule")
    minute = int(complete_after(settings).total_seconds() // 60) % 60
    assert schedule.cron_schedule == f"{minute} * * * *"
    assert minute == (settings.stream_watermark_minutes + 5) % 60
    tick = datetime(2026, 11, 23, 10, minute, tzinfo=UTC)
    request = hourly_batch_schedule(dg.build_schedule_context(scheduled_execution_time=tick))
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == "2026-11-23-09:00"
    # A minute before that tick the hour before is still the last complete one.
    assert last_complete_hour(settings, tick - timedelta(minutes=1)) == datetime(2026, 11, 23, 8, tzinfo=UTC)


def test_partitions_run_from_the_setting_to_the_current_hour() -> None:
    settings = Settings(partitions_start="2026-11-20T06:00")
    partitions = hourly_partitions(settings)
    now = datetime.now(UTC)
    keys = partitions.get_partition_keys(current_time=now)
    assert keys[0] == "2026-11-20-06:00"
    assert keys[-1] == partition_key(now)  # the current hour can be materialized by hand
    assert partition_hour(keys[-1]) <= now < partition_hour(keys[-1]) + timedelta(hours=1)
    with pytest.raises(ValueError, match="LAKEHOUSE_PARTITIONS_START"):
        hourly_partitions(Settings(partitions_start="yesterday"))


def test_the_report_sensor_asks_once_per_due_period_until_every_channel_is_sent() -> None:
    from orchestration.reports.jobs import due_requests
    from serving.reports.schedules import checked_schedule

    schedule = checked_schedule(schedule_id="rs-1", tenant="acme", dashboard="overview", cadence="daily", at="08:00",
                                tz="UTC", weekday=None, formats=["pdf"], email=["a@example.com"],
                                webhook="https://example.com/h", filters=[],
                                created=datetime(2026, 11, 1, tzinfo=UTC), email_enabled=True)
    now = datetime(2026, 11, 26, 8, 0, 30, tzinfo=UTC)
    assert due_requests([schedule], {}, now - timedelta(minutes=1))[0].run_key == "rs-1:2026-11-24/1d"
    [request] = due_requests([schedule], {}, now)
    assert request.run_key == "rs-1:2026-11-25/1d"
    assert request.run_config["ops"]["deliver_scheduled_report"]["config"] == {
        "tenant": "acme", "schedule_id": "rs-1", "first_day": "2026-11-25"}
    assert due_requests([schedule], {("rs-1", "2026-11-25/1d"): {"email"}}, now)  # the webhook is still owed
    assert due_requests([schedule], {("rs-1", "2026-11-25/1d"): {"email", "webhook"}}, now) == []
