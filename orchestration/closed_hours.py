"""The batch layer's rule for open hours, shared by the assets, the schedule and the sensor.

An hour is restated only once it is closed (``batch.hour_state``): the stream's watermark has passed
its end and the landing has committed everything the hot sink counted for it, or, with a quiet stream,
the wall clock is ``watermark + LAKEHOUSE_BATCH_CLOSE_GRACE_SECONDS`` past its end and the stream has
processed everything Kafka holds (the hour is then sealed against the hot sink). Runs wait for that,
at most ``LAKEHOUSE_BATCH_OPEN_HOUR_WAIT_SECONDS``, then refuse with the reason. A run tagged
``lakehouse/allow_open_hour=true`` skips the wait: the restatement's own guard still refuses to
remove a counted event, but rows the stream inserts between the guard and the swap would be lost,
which is why neither the schedule nor the sensor ever sets it.
"""

# No `from __future__ import annotations` in this module: Dagster reads the annotations of the
# context and resource parameters when the definitions load, and needs real types, not strings.

import time
from datetime import datetime, timedelta

import dagster as dg

from batch.hour_state import HourState, hour_state
from common.hot_store import HotStore
from common.kafka_offsets import topic_end_offsets
from common.settings import Settings

ALLOW_OPEN_HOUR_TAG = "lakehouse/allow_open_hour"
ALLOW_REMOVALS_TAG = "lakehouse/allow_removals"
POLL_SECONDS = 5.0


def watermark_delay(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.stream_watermark_minutes)


def close_grace(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.batch_close_grace_seconds)


def current_hour_state(store: HotStore, settings: Settings, hour: datetime) -> HourState:
    """``batch.hour_state`` with this deployment's watermark, grace and Kafka topic (for closing quiet hours)."""
    return hour_state(store, hour, watermark_delay(settings),
                      kafka_ends=lambda: topic_end_offsets(settings.kafka_bootstrap, settings.kafka_topic),
                      grace=close_grace(settings))


def tagged(context: dg.AssetExecutionContext, tag: str) -> bool:
    return (context.run.tags.get(tag) or "").strip().lower() in {"1", "true", "yes"}


def require_closed_hour(context: dg.AssetExecutionContext, store: HotStore, settings: Settings,
                        hour: datetime) -> HourState:
    """Waits (bounded) until ``hour`` is closed; raises ``dg.Failure`` naming the reason if it stays open."""
    state = current_hour_state(store, settings, hour)
    if state.closed:
        return state
    if tagged(context, ALLOW_OPEN_HOUR_TAG):
        context.log.warning(f"{ALLOW_OPEN_HOUR_TAG}: running an open hour on request ({state.reason})")
        return state
    deadline = time.monotonic() + settings.batch_open_hour_wait_seconds
    wait = settings.batch_open_hour_wait_seconds
    context.log.info(f"waiting up to {wait:.0f}s for the hour to close: {state.reason}")
    while time.monotonic() < deadline:
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        state = current_hour_state(store, settings, hour)
        if state.closed:
            return state
    raise dg.Failure(
        description=(
            f"{hour:%Y-%m-%d %H}:00 UTC is still open, so it is not restated: {state.reason}. Restating an open hour "
            "would replace events the speed layer counted with an archive that lacks them. Run it again once the "
            f"hour is closed (the hourly schedule and the late-landing sensor do), or tag the run "
            f"{ALLOW_OPEN_HOUR_TAG}=true to restate it anyway (the swap still refuses to remove counted events)."
        ),
        metadata={"open_reason": dg.MetadataValue.text(state.reason)},
    )
