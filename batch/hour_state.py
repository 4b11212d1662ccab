"""Whether an hour is closed: the speed layer can add nothing more to it and the landing holds all it counted.

A restatement replaces an hour of the hot tier with the archive of the hour's committed landing files.
That is only safe once two things hold, both read from the ``stream_progress`` rows the stream job
writes after every micro-batch (query name, watermark used by the batch, Kafka end offsets):

1. **The hot sink is done with the hour.** A ``hot`` micro-batch drops every event older than the
   watermark (the deduplication's late-event filter), and the watermark never goes back (it is kept in
   the checkpoint). Spark filters a batch's late events with the *previous* batch's watermark (the one
   a batch records is the one it computed for eviction), so the first recorded ``hot`` batch whose
   watermark is at or past the hour's end may still add to the hour, and every batch after it cannot.
   The watermark trails the newest event time by the allowed lateness
   (``LAKEHOUSE_STREAM_WATERMARK_MINUTES``), so this is "the stream's progress passed the hour's end
   plus the allowed lateness".
2. **The landing caught up with what the hot sink counted.** Every event the hot sink wrote for the
   hour came from a batch up to that first closing one; its end offsets bound them. The landing's
   newest committed batch must have reached those offsets on every partition, otherwise the archive
   would miss events dashboards already show.

When the hot tier holds no progress of a ``hot`` query at all (no speed layer ever wrote: lakes
filled by the batch layer alone, restores), the wall clock decides: the hour is closed once its end
is ``watermark + LANDING_MARGIN`` in the past. Either way the restatement's own guard
(``batch.restate``) refuses a swap that would remove a counted event, so a missing progress row can
cost a refused run, never a lost event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from common.hot_store import HotStore

LANDING_MARGIN = timedelta(minutes=5)  # wall-clock fallback only: time for the landing to commit the hour's last files


@dataclass(frozen=True)
class HourState:
    """An hour's state for the batch layer; ``reason`` says why it is open (or how it was found closed)."""

    hour: datetime
    closed: bool
    reason: str


def parse_offsets(text: str | None) -> dict[str, dict[str, int]]:
    """Spark's source end offsets (``{"topic": {"partition": offset}}``) as a dict; empty when unknown."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {topic: {str(p): int(o) for p, o in parts.items()}
            for topic, parts in value.items() if isinstance(parts, dict)}


def offsets_behind(landing: dict[str, dict[str, int]], needed: dict[str, dict[str, int]]) -> list[str]:
    """``topic/partition: landing < needed`` for every partition where the landing has not reached ``needed``."""
    behind = []
    for topic, parts in sorted(needed.items()):
        for partition, offset in sorted(parts.items(), key=lambda kv: int(kv[0])):
            have = landing.get(topic, {}).get(partition, -1)
            if have < offset:
                behind.append(f"{topic}/{partition}: {have if have >= 0 else 'none'} < {offset}")
    return behind


def judge_hour(
    hour: datetime,
    closing_watermark: datetime | None,
    hot_offsets_at_close: str | None,
    landing_offsets: str | None,
    has_hot_progress: bool,
    now: datetime,
    watermark_delay: timedelta,
) -> HourState:
    """The decision itself, from what ``stream_progress`` says (pure: unit-tested without a hot tier).

    ``closing_watermark``: the watermark of the first recorded ``hot`` batch at or past the hour's end
    (None if none yet); ``hot_offsets_at_close``: that batch's end offsets, which bound every event the
    hot sink wrote for the hour; ``landing_offsets``: end offsets of the newest ``landing`` batch.
    """
    hour = hour.astimezone(UTC)
    end = hour + timedelta(hours=1)
    if not has_hot_progress:
        ready = end + watermark_delay + LANDING_MARGIN
        if now >= ready:
            return HourState(hour, True, "no speed-layer progress recorded; the hour ended long enough ago")
        return HourState(hour, False, f"no speed-layer progress recorded and the hour ends at {end:%H:%M} UTC: "
                         f"it is complete from {ready:%Y-%m-%d %H:%M} UTC (watermark + {LANDING_MARGIN})")
    if closing_watermark is None:
        return HourState(hour, False, f"the stream's watermark has not passed the hour's end ({end:%Y-%m-%d %H:%M} "
                         "UTC) yet: the speed layer may still add events to it (it passes once events "
                         f"{watermark_delay.total_seconds() / 60:g} minutes newer than the hour's end have been "
                         "processed)")
    behind = offsets_behind(parse_offsets(landing_offsets), parse_offsets(hot_offsets_at_close))
    if behind:
        return HourState(hour, False, "the landing sink has not committed everything the hot sink counted for the "
                         f"hour ({'; '.join(behind[:4])}{' …' if len(behind) > 4 else ''}): it catches up within "
                         "its trigger interval")
    return HourState(hour, True, f"the stream's watermark passed the hour's end ({closing_watermark:%Y-%m-%d %H:%M} "
                     "UTC) and the landing has committed everything the hot sink counted")


def hour_state(store: HotStore, hour: datetime, watermark_delay: timedelta, now: datetime | None = None) -> HourState:
    """Reads ``stream_progress`` and judges the hour (see the module's docstring)."""
    hour = hour.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    end = (hour + timedelta(hours=1)).replace(tzinfo=None)
    row = store.query_arrow(
        "SELECT countIf(query_name = 'hot') AS hot_batches, "
        "minIf(watermark, query_name = 'hot' AND watermark >= {end:DateTime64(3, 'UTC')}) AS closing, "
        "countIf(query_name = 'hot' AND watermark >= {end:DateTime64(3, 'UTC')}) AS closing_batches, "
        "argMinIf(end_offsets, finished_at, query_name = 'hot' AND watermark >= {end:DateTime64(3, 'UTC')}) "
        "AS hot_at_close, "
        "argMaxIf(end_offsets, finished_at, query_name = 'landing') AS landing "
        "FROM stream_progress",
        {"end": end},
    ).to_pylist()[0]
    closing = row["closing"] if row["closing_batches"] else None
    if isinstance(closing, datetime) and closing.tzinfo is None:
        closing = closing.replace(tzinfo=UTC)
    return judge_hour(hour, closing, row["hot_at_close"], row["landing"], row["hot_batches"] > 0,
                      now or datetime.now(UTC), watermark_delay)
