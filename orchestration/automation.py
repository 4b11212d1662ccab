"""When the batch layer runs by itself: the hourly schedule, the late-landing sensor, the freshness schedule.

* ``hourly_batch_schedule`` runs ``hourly_batch`` (archive, then recompute and restatement, with their
  checks) for the last complete hour, at ``watermark + 5`` minutes past every hour (minute 15 with the
  default 10-minute watermark): by then the stream drops that hour's events as late and the landing
  sink has committed its files. The minute is derived from ``LAKEHOUSE_STREAM_WATERMARK_MINUTES``.
* ``late_landing_sensor`` finds hours whose committed landing files are not all listed in their
  archive commit (events later than the watermark land after the hour was archived) and requests
  ``hourly_batch`` for exactly those hours. Its run key is the hour plus a digest of the hour's
  landing files, so each new set of files triggers one run and re-evaluating changes nothing.
  Hours never archived are left to the schedule and to backfills. Open hours (``batch.hour_state``:
  the stream's watermark has not passed their end, or the landing has not caught up with the hot
  sink; with a quiet stream, not yet closed by the wall clock) are never requested: they are looked
  at again on later ticks, once closed.
* ``archive_freshness_schedule`` evaluates ``archive_is_fresh`` on its own, half an hour after the
  hourly runs, so that a schedule that stopped running is noticed too.

Backfills need nothing here: both assets are hourly-partitioned, so any range of hours can be
launched from the UI or with ``dagster job backfill -w workspace.yaml -j hourly_batch --from … --to …``,
and re-running an hour is idempotent. Runs of the same hour never overlap: ``lakehouse dagster``
configures the run queue with one run per ``dagster/partition`` tag value (orchestration/instance.py).
"""

# No `from __future__ import annotations` in this module: Dagster reads the annotations of the
# context and resource parameters when the definitions load, and needs real types, not strings.

import hashlib
import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from common.hot_store import HotStoreError
from common.lake import lake_filesystem, landing_files_by_hour
from common.lake_tables import ARCHIVE_TABLE, hour_provenance
from orchestration.archive.assets import raw_events_archive
from orchestration.archive.checks import archive_is_fresh
from orchestration.closed_hours import current_hour_state
from orchestration.hours import (
    LOAD_SETTINGS,
    complete_after,
    floor_hour,
    last_complete_hour,
    partition_key,
    partitions_start,
)
from orchestration.resources import HotStoreResource, LakehouseResource
from orchestration.rollups.assets import rollups_hourly

hourly_batch = dg.define_asset_job(
    "hourly_batch",
    selection=dg.AssetSelection.assets(raw_events_archive, rollups_hourly) - dg.AssetSelection.checks(archive_is_fresh),
    description="Archive one hour of landing files, recompute it with PySpark and restate the hot tier (with checks).",
)

archive_freshness = dg.define_asset_job(
    "archive_freshness",
    selection=dg.AssetSelection.checks(archive_is_fresh),
    description="Check that the newest archived hour is the last complete hour.",
)

_SCHEDULE_MINUTE = int(complete_after(LOAD_SETTINGS).total_seconds() // 60) % 60


@dg.schedule(
    job=hourly_batch,
    cron_schedule=f"{_SCHEDULE_MINUTE} * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour, once the stream's watermark has passed it: archive and restate the last complete hour.",
)
def hourly_batch_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """The hour to run is derived from the tick's own time, so a late or replayed tick runs the right hour."""
    tick = context.scheduled_execution_time or datetime.now(UTC)
    hour = last_complete_hour(LOAD_SETTINGS, tick)
    if hour < partitions_start(LOAD_SETTINGS):
        return dg.SkipReason(f"{partition_key(hour)} is before LAKEHOUSE_PARTITIONS_START")
    key = partition_key(hour)
    return dg.RunRequest(run_key=key, partition_key=key, tags={"lakehouse/trigger": "schedule"})


@dg.schedule(
    job=archive_freshness,
    cron_schedule=f"{(_SCHEDULE_MINUTE + 30) % 60} * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour, half an hour after hourly_batch_schedule: is the archive fresh?",
)
def archive_freshness_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """The check is not partitioned: one run, no partition."""
    return dg.RunRequest(tags={"lakehouse/trigger": "schedule"})


def landing_digest(files: list[str]) -> str:
    """A short digest of an hour's set of committed landing files (order-independent)."""
    return hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()[:16]


@dg.sensor(
    job=hourly_batch,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-archives and restates hours that received landing files after they were archived (late events).",
)
def late_landing_sensor(
    context: dg.SensorEvaluationContext, lakehouse: LakehouseResource, hot_store: HotStoreResource
) -> dg.SensorResult:
    """Requests ``hourly_batch`` for each archived hour whose archive commit misses some committed landing files.

    The cursor remembers, per hour, the digest of the landing files already compared with the
    archive commit's ``landing_files``, so a tick reads the archive table's history only for hours whose
    landing changed since (back to the oldest such hour). Hours never archived are not remembered: they
    are checked again once archived.
    Only hours that can still receive events are looked at (the API refuses events older than
    ``LAKEHOUSE_INGEST_MAX_AGE_DAYS``). An hour that is still open is skipped and not remembered,
    so it is compared again once closed: re-restating a filling hour every minute would replace
    events the speed layer counted with an archive that lags behind it.
    """
    settings = lakehouse.settings()
    filesystem = lake_filesystem(settings)
    now = datetime.now(UTC)
    oldest = max(partitions_start(settings), now - timedelta(days=settings.ingest_max_age_days + 1))
    newest = floor_hour(now)  # the last partition: HOURLY ends with the current hour
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    remembered: dict[str, str] = {}
    requests = []
    changed: dict[datetime, tuple[str, list[str]]] = {}
    for hour, files in landing_files_by_hour(settings, filesystem).items():
        key = partition_key(hour)
        if hour < oldest or hour > newest:
            continue
        digest = landing_digest(files)
        if seen.get(key) == digest:
            remembered[key] = digest
            continue
        changed[hour] = (digest, files)
    archived = hour_provenance(settings, ARCHIVE_TABLE, changed)
    for hour, (digest, files) in changed.items():
        key = partition_key(hour)
        if hour not in archived:
            continue
        missing = sorted(set(files) - set(archived[hour].get("landing_files", [])))
        if missing:
            try:
                state = current_hour_state(hot_store.store(), settings, hour)
            except (HotStoreError, dg.Failure) as exc:
                return dg.SensorResult(cursor=context.cursor,  # nothing remembered: the next tick looks again
                                       skip_reason=f"the hot tier is unreachable, so open hours cannot be told: {exc}")
            if not state.closed:
                context.log.info(f"{key}: {len(missing)} landing file(s) not archived, but the hour is open: "
                                 f"{state.reason}")
                continue
            context.log.info(f"{key}: {len(missing)} landing file(s) not in its archive commit")
            requests.append(dg.RunRequest(
                run_key=f"{key}:{digest}",
                partition_key=key,
                tags={"lakehouse/trigger": "late-landing", "lakehouse/late_landing_files": str(len(missing))},
            ))
        remembered[key] = digest
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(remembered, sort_keys=True),
        skip_reason=None if requests else "every archived hour lists all of its committed landing files",
    )


defs = dg.Definitions(
    jobs=[hourly_batch, archive_freshness],
    schedules=[hourly_batch_schedule, archive_freshness_schedule],
    sensors=[late_landing_sensor],
)
