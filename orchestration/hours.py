"""The batch layer's clock: one Dagster partition per UTC hour of event time, and when an hour is complete.

Partitions are by *event* time, the same hours as the lake's ``dt=/hour=`` folders and the hot
tier's hourly partitions, so partition ``2026-11-23-10:00`` is exactly the archive folder
``dt=2026-11-23/hour=10`` and the hot tier's partition ``2026-11-23 10:00:00``.

The partitions start at ``LAKEHOUSE_PARTITIONS_START`` and end with the *current* hour
(``end_offset=1``), but an hour is only archived and restated once it is closed (the stream's
watermark past its end and the landing caught up with the hot sink, or by the wall clock once a quiet
stream has processed everything: ``batch.hour_state``, ``orchestration.closed_hours``); a run of an
open hour waits, bounded, then refuses. The schedule fires when an hour is normally closed
(``complete_after``): from then on the stream drops every event of that hour as late, and late
events only reach the landing area, where the late-landing sensor finds them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from common.settings import Settings

PARTITION_FORMAT = "%Y-%m-%d-%H:%M"  # Dagster's default for hourly partitions, kept explicit
OWNERS = ["team:data-engineering"]


def partitions_start(settings: Settings) -> datetime:
    """The first partition's hour from ``settings.partitions_start`` (``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:00``)."""
    text = settings.partitions_start.strip()
    try:
        start = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            f"LAKEHOUSE_PARTITIONS_START={text!r} is not a date or date-time; use e.g. 2026-11-01 or 2026-11-01T06:00"
        ) from exc
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    return start.replace(minute=0, second=0, microsecond=0)


def hourly_partitions(settings: Settings) -> dg.HourlyPartitionsDefinition:
    """Hourly UTC partitions from ``partitions_start`` up to and including the current hour."""
    return dg.HourlyPartitionsDefinition(
        start_date=partitions_start(settings).strftime(PARTITION_FORMAT),
        fmt=PARTITION_FORMAT,
        timezone="UTC",
        end_offset=1,
    )


def partition_key(hour: datetime) -> str:
    """The partition key of the hour holding ``hour`` (UTC)."""
    return floor_hour(hour).strftime(PARTITION_FORMAT)


def partition_hour(key: str) -> datetime:
    """The first instant (UTC) of the hour named by a partition key."""
    return datetime.strptime(key, PARTITION_FORMAT).replace(tzinfo=UTC)


def floor_hour(moment: datetime) -> datetime:
    """The first instant (UTC) of the hour holding ``moment``."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def complete_after(settings: Settings) -> timedelta:
    """How long after its end an hour is complete: the stream's watermark plus the grace
    (``LAKEHOUSE_BATCH_CLOSE_GRACE_SECONDS``, time for the landing to commit the hour's last files; also
    when a quiet stream's hour may close by the wall clock)."""
    return timedelta(minutes=settings.stream_watermark_minutes, seconds=settings.batch_close_grace_seconds)


def last_complete_hour(settings: Settings, now: datetime) -> datetime:
    """The newest hour whose end is at least ``complete_after`` before ``now``."""
    return floor_hour(now - complete_after(settings)) - timedelta(hours=1)


# Read once when the code location loads: a partitions definition and a cron schedule must be static.
# Runs build their own Settings through the `lakehouse` resource (same environment in practice).
LOAD_SETTINGS = Settings()
HOURLY = hourly_partitions(LOAD_SETTINGS)


def _without_preview_warning(build: Callable[[], Any]) -> Any:
    # Checks partitioned like their assets (one result per hour in the UI) are a preview feature of
    # Dagster 1.13, pinned in pyproject.toml and exercised by the integration tests; its warning is
    # silenced only around the definitions that use it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec",
                                category=dg.PreviewWarning)
        return build()


def hourly_check(**kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetChecksDefinition]:
    """``@dg.asset_check`` partitioned by ``HOURLY``: the check runs, and reports, per hour."""

    def decorate(fn: Callable[..., Any]) -> dg.AssetChecksDefinition:
        return _without_preview_warning(lambda: dg.asset_check(partitions_def=HOURLY, **kwargs)(fn))

    return decorate


def hourly_check_spec(name: str, asset: str, description: str) -> dg.AssetCheckSpec:
    """An ``AssetCheckSpec`` partitioned by ``HOURLY``, for a check that an hourly asset reports itself."""
    return _without_preview_warning(
        lambda: dg.AssetCheckSpec(name, asset=asset, partitions_def=HOURLY, description=description))
