"""Restated hours, announced by the batch layer to whatever keeps answers derived from them.

A restatement replaces a whole hour of the hot tier from a Dagster run. The serving process caches
dashboard answers in Redis, and those whose range includes the hour now hold the replaced numbers. The
batch layer does not know that cache: it appends the hour and its tenants to a Redis stream (``STREAM``),
and the serving process (``serving/restatements.py``) reads the stream in a consumer group and drops the
answers the restatement made wrong. The stream is the record: an announcement made while no API process
runs is applied when one starts (the group remembers what it has read), and of several API replicas
exactly one applies each announcement.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError

from common.redis_clients import sync_redis

STREAM = "lakehouse:restatements:v1"
MAX_ENTRIES = 10_000  # the stream is trimmed (approximately) to this many announcements

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestatedHour:
    """One announcement: the tenants whose numbers of ``[hour, hour + 1 h)`` were replaced."""

    hour: datetime
    tenants: tuple[str, ...]

    @property
    def end(self) -> datetime:
        return self.hour + timedelta(hours=1)

    def fields(self) -> dict[str, str]:
        return {"hour": self.hour.astimezone(UTC).isoformat(), "tenants": json.dumps(list(self.tenants))}

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str]) -> RestatedHour:
        """Parse a stream entry; ValueError says what is wrong with it."""
        text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in fields.items()}
        try:
            hour = datetime.fromisoformat(text["hour"])
            tenants = json.loads(text["tenants"])
        except (KeyError, ValueError) as exc:
            raise ValueError(f"not a restatement announcement: {text!r} ({exc})") from exc
        if hour.tzinfo is None or not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants):
            raise ValueError(f"not a restatement announcement: {text!r}")
        return cls(hour.astimezone(UTC), tuple(tenants))


def announce_restated_hour(redis_url: str, tenants: Iterable[str], hour: datetime) -> str | None:
    """Record that ``hour`` of ``tenants`` was restated; returns the stream entry's id.

    Never fails the restatement: with Redis unreachable nothing is recorded (logged, None) and cached
    answers including the hour expire by their TTL.
    """
    announcement = RestatedHour(hour.astimezone(UTC), tuple(sorted(set(tenants))))
    client = sync_redis(redis_url, timeout_s=2)
    try:
        entry = client.xadd(STREAM, announcement.fields(), maxlen=MAX_ENTRIES, approximate=True)
        return entry.decode() if isinstance(entry, bytes) else str(entry)
    except RedisError as exc:
        log.warning("could not announce the restatement of %s (%s); cached answers expire within their TTL",
                    hour, exc)
        return None
    finally:
        client.close()
