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

**A quiet stream closes by the wall clock.** The watermark only moves with new events, so with no
traffic (a quiet night, a demo that stopped sending) it never passes the hour's end. Then, once the
hour's end is ``watermark + grace`` (``LAKEHOUSE_BATCH_CLOSE_GRACE_SECONDS``) in the past, the hour
closes in two steps (``judge_quiet_hour`` decides, ``hour_state`` acts):

a. **Caught up?** The topic's end offsets are read from Kafka now; if the newest committed ``hot`` and
   ``landing`` batches have reached them on every partition, the stream has processed everything
   written until now. If not (the stream is down, lagging, or a micro-batch is in flight), the hour
   stays open: those records may hold events of the hour that arrived in time.
b. **Seal.** The batch layer records ``closed_through = hour's end`` in ``hour_closings``. From every
   ``hot`` micro-batch that reads it on, the hot sink drops events older than it (they are late, as the
   watermark would have made them: landed and counted by the batch layer). It then reads the end
   offsets again (``end_offsets_after``, stored beside it): a record below them may sit in a batch
   that read the seal too early, a record at or above them is in a batch planned after the seal was
   written, so it read the seal. Once the ``hot`` and ``landing`` queries have committed
   ``end_offsets_after``, no event of the hour can be inserted by the stream any more and everything
   it did insert is landed: the hour is closed. Later checks find the seal and only compare offsets.
   (A micro-batch replayed after a crash reads the seal again; rows of the hour its first attempt
   already inserted stay, and the restatement, built from a landing that holds them, keeps them.)

This needs no clock shared with the stream (the wall clock only says when it is fair to call the
hour's remaining events late) and nothing is lost: a dropped event is in the landing, and the
late-landing sensor restates its hour.

When the hot tier holds no progress of a ``hot`` query at all (no speed layer ever wrote: lakes
filled by the batch layer alone, restores), the wall clock decides alone: the hour is closed once its
end is ``watermark + grace`` in the past. Either way the restatement's own guard (``batch.restate``)
refuses a swap that would remove a counted event, so a missing progress row can cost a refused run,
never a lost event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import pyarrow as pa

from common.hot_store import HotStore

LANDING_MARGIN = timedelta(minutes=5)  # default grace (LAKEHOUSE_BATCH_CLOSE_GRACE_SECONDS) past watermark + hour end
CLOSINGS_TABLE = "hour_closings"
CLOSINGS_SCHEMA = pa.schema([("closed_through", pa.timestamp("ms", "UTC")), ("recorded_at", pa.timestamp("ms", "UTC")),
                             ("end_offsets_after", pa.string())])
KafkaEnds = Callable[[], dict[str, dict[str, int]]]  # the topic's end offsets now, as {"topic": {"partition": n}}


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
            have = landing.get(topic, {}).get(partition)
            if (have if have is not None else 0) < offset:  # an empty partition needs nothing
                behind.append(f"{topic}/{partition}: {have if have is not None else 'none'} < {offset}")
    return behind


def judge_hour(
    hour: datetime,
    closing_watermark: datetime | None,
    hot_offsets_at_close: str | None,
    landing_offsets: str | None,
    has_hot_progress: bool,
    now: datetime,
    watermark_delay: timedelta,
    grace: timedelta = LANDING_MARGIN,
) -> HourState:
    """The decision itself, from what ``stream_progress`` says (pure: unit-tested without a hot tier).

    ``closing_watermark``: the watermark of the first recorded ``hot`` batch at or past the hour's end
    (None if none yet); ``hot_offsets_at_close``: that batch's end offsets, which bound every event the
    hot sink wrote for the hour; ``landing_offsets``: end offsets of the newest ``landing`` batch.
    """
    hour = hour.astimezone(UTC)
    end = hour + timedelta(hours=1)
    if not has_hot_progress:
        ready = end + watermark_delay + grace
        if now >= ready:
            return HourState(hour, True, "no speed-layer progress recorded; the hour ended long enough ago")
        return HourState(hour, False, f"no speed-layer progress recorded and the hour ends at {end:%H:%M} UTC: "
                         f"it is complete from {ready:%Y-%m-%d %H:%M} UTC (watermark + {grace})")
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


@dataclass(frozen=True)
class QuietVerdict:
    """What the wall clock allows for an hour the watermark has not passed: ``open``, ``seal`` it, ``closed``."""

    action: Literal["open", "seal", "closed"]
    reason: str


def judge_quiet_hour(
    hour: datetime,
    now: datetime,
    watermark_delay: timedelta,
    grace: timedelta,
    hot_offsets: str | None,
    landing_offsets: str | None,
    kafka_ends: dict[str, dict[str, int]] | None,
    sealed_offsets: str | None,
) -> QuietVerdict:
    """Closing by the wall clock (pure; see the module's docstring, steps a and b).

    ``hot_offsets``/``landing_offsets``: end offsets of the newest committed batch of each query;
    ``kafka_ends``: the topic's end offsets read now (None when not read); ``sealed_offsets``: the
    ``end_offsets_after`` of the first seal at or past the hour's end (None when not sealed yet).
    """
    end = hour.astimezone(UTC) + timedelta(hours=1)
    ready = end + watermark_delay + grace
    hot, landing = parse_offsets(hot_offsets), parse_offsets(landing_offsets)
    if sealed_offsets is not None:
        needed = parse_offsets(sealed_offsets)
        behind = [f"hot {b}" for b in offsets_behind(hot, needed)] + \
                 [f"landing {b}" for b in offsets_behind(landing, needed)]
        if behind:
            return QuietVerdict("open", "sealed by the wall clock (the hot sink adds no event before "
                                f"{end:%Y-%m-%d %H:%M} UTC any more), waiting for the stream to commit what Kafka held "
                                f"then ({_short(behind)})")
        return QuietVerdict("closed", f"closed by the wall clock: the stream had processed everything Kafka held after "
                            f"{ready:%Y-%m-%d %H:%M} UTC, and the hot sink adds no event before "
                            f"{end:%Y-%m-%d %H:%M} UTC any more")
    if now < ready:
        return QuietVerdict("open", f"the stream's watermark has not passed the hour's end ({end:%Y-%m-%d %H:%M} UTC) "
                            "yet: the speed layer may still add events to it (it passes once events "
                            f"{watermark_delay.total_seconds() / 60:g} minutes newer than the hour's end have been "
                            f"processed; without traffic the wall clock closes it from {ready:%Y-%m-%d %H:%M} UTC once "
                            "the stream has processed everything in Kafka)")
    if kafka_ends is None:
        return QuietVerdict("open", "the stream's watermark has not passed the hour's end and Kafka's end offsets "
                            "were not read, so it cannot be told whether the stream has processed everything")
    behind = [f"hot {b}" for b in offsets_behind(hot, kafka_ends)] + \
             [f"landing {b}" for b in offsets_behind(landing, kafka_ends)]
    if behind:
        return QuietVerdict("open", "the stream's watermark has not passed the hour's end and the stream has not "
                            f"processed everything Kafka holds ({_short(behind)}): it is down, behind, or a "
                            "micro-batch is in flight, and those records may hold events of the hour; it closes once "
                            "caught up")
    return QuietVerdict("seal", "the stream has processed everything Kafka holds")


def _short(items: list[str]) -> str:
    return "; ".join(items[:4]) + (" …" if len(items) > 4 else "")


@dataclass(frozen=True)
class StreamProgress:
    """What ``stream_progress`` and ``hour_closings`` say about one hour."""

    has_hot_progress: bool
    closing_watermark: datetime | None
    hot_offsets_at_close: str | None
    hot_offsets: str | None
    landing_offsets: str | None
    sealed_offsets: str | None


def read_progress(store: HotStore, hour: datetime) -> StreamProgress:
    end = (hour + timedelta(hours=1)).replace(tzinfo=None)
    row = store.query_arrow(
        "SELECT countIf(query_name = 'hot') AS hot_batches, "
        "minIf(watermark, query_name = 'hot' AND watermark >= {end:DateTime64(3, 'UTC')}) AS closing, "
        "countIf(query_name = 'hot' AND watermark >= {end:DateTime64(3, 'UTC')}) AS closing_batches, "
        "argMinIf(end_offsets, finished_at, query_name = 'hot' AND watermark >= {end:DateTime64(3, 'UTC')}) "
        "AS hot_at_close, "
        "argMaxIf(end_offsets, finished_at, query_name = 'hot') AS hot, "
        "argMaxIf(end_offsets, finished_at, query_name = 'landing') AS landing "
        "FROM stream_progress",
        {"end": end},
    ).to_pylist()[0]
    seal = store.query_arrow(
        f"SELECT count() AS seals, argMin(end_offsets_after, recorded_at) AS offsets FROM {CLOSINGS_TABLE} "
        "WHERE closed_through >= {end:DateTime64(3, 'UTC')} AND end_offsets_after != ''",
        {"end": end},
    ).to_pylist()[0]
    closing = row["closing"] if row["closing_batches"] else None
    if isinstance(closing, datetime) and closing.tzinfo is None:
        closing = closing.replace(tzinfo=UTC)
    return StreamProgress(row["hot_batches"] > 0, closing, row["hot_at_close"], row["hot"], row["landing"],
                          seal["offsets"] if seal["seals"] else None)


def seal_hour(store: HotStore, hour: datetime, kafka_ends: KafkaEnds) -> None:
    """Step b: the hot sink stops adding events before the hour's end, then what Kafka held after that is recorded."""
    end = hour + timedelta(hours=1)

    def record(offsets: str) -> None:
        store.insert_arrow(CLOSINGS_TABLE, pa.table({"closed_through": [end], "recorded_at": [datetime.now(UTC)],
                                                     "end_offsets_after": [offsets]}, schema=CLOSINGS_SCHEMA))

    record("")  # visible to every hot micro-batch that starts writing from now on
    record(json.dumps(kafka_ends(), sort_keys=True))


def hour_state(store: HotStore, hour: datetime, watermark_delay: timedelta, now: datetime | None = None,
               kafka_ends: KafkaEnds | None = None, grace: timedelta = LANDING_MARGIN) -> HourState:
    """Reads ``stream_progress`` and judges the hour (see the module's docstring).

    Without ``kafka_ends`` (the topic's end offsets, read on demand) a quiet hour never closes by the
    wall clock; with it, this may seal the hour (write to ``hour_closings``).
    """
    hour = hour.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    now = now or datetime.now(UTC)
    progress = read_progress(store, hour)
    state = judge_hour(hour, progress.closing_watermark, progress.hot_offsets_at_close, progress.landing_offsets,
                       progress.has_hot_progress, now, watermark_delay, grace)
    if state.closed or not progress.has_hot_progress or progress.closing_watermark is not None:
        return state  # closed, or the watermark passed and only the landing lags: the wall clock cannot help
    ends = None
    if kafka_ends is not None and progress.sealed_offsets is None and now >= hour + timedelta(hours=1) + \
            watermark_delay + grace:
        try:
            ends = kafka_ends()
        except Exception as exc:  # any failure to read Kafka leaves the hour open, with the reason
            return HourState(hour, False, f"{state.reason}; the wall clock cannot close it either: {exc}")
    verdict = judge_quiet_hour(hour, now, watermark_delay, grace, progress.hot_offsets, progress.landing_offsets,
                               ends, progress.sealed_offsets)
    if verdict.action == "seal":
        assert kafka_ends is not None
        try:
            seal_hour(store, hour, kafka_ends)
        except Exception as exc:  # a half-written seal only makes the hot sink drop late events
            return HourState(hour, False, f"{state.reason}; sealing it by the wall clock failed: {exc}")
        progress = read_progress(store, hour)
        verdict = judge_quiet_hour(hour, now, watermark_delay, grace, progress.hot_offsets, progress.landing_offsets,
                                   None, progress.sealed_offsets)
    return HourState(hour, verdict.action == "closed", verdict.reason)
