"""The event contract: what a client may send, and the normalized form every stage reads.

Validation is pure logic (no I/O) so the API, the tests and the synthetic generator agree on it.
A client may omit ``event_id`` (one is generated) and ``tenant`` (``default``); unknown top-level
fields are kept in ``properties`` rather than dropped, so nothing a client sent is lost.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

EVENT_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
KNOWN_FIELDS = {"event", "timestamp", "user_id", "tenant", "event_id", "page", "country", "device", "revenue",
                "properties"}
MAX_TEXT = {"page": 2048, "country": 64, "device": 64, "tenant": 64, "event_id": 128, "user_id": 128}

# Normalized event as it travels on Kafka and lands in the lake and the hot tier.
EVENT_ARROW_SCHEMA = pa.schema(
    [
        ("tenant", pa.string()),
        ("event", pa.string()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("page", pa.string()),
        ("country", pa.string()),
        ("device", pa.string()),
        ("revenue", pa.float64()),
        ("properties", pa.string()),
        ("received_at", pa.timestamp("ms", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class Rejection:
    index: int
    reason: str


def format_ts(ts: datetime, timespec: str = "milliseconds") -> str:
    """The one way a time is written out: ISO-8601 in UTC with ``Z``, e.g. ``2026-11-23T10:00:00.000Z``.

    ``timespec`` as in ``datetime.isoformat``: ``"auto"`` writes no fraction when it is zero
    (``2026-11-23T10:00:00Z``), the form of the API's range bounds and buckets.
    """
    return ts.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def format_optional_ts(ts: datetime | None, timespec: str = "milliseconds") -> str | None:
    """``format_ts``, or None for a missing time."""
    return None if ts is None else format_ts(ts, timespec)


def parse_timestamp(value: Any) -> datetime:
    """ISO-8601 with or without offset; a value without offset is taken as UTC (documented)."""
    if not isinstance(value, str):
        raise ValueError("timestamp must be an ISO-8601 string, e.g. 2026-11-23T10:00:00Z")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"timestamp {value!r} is not ISO-8601 (e.g. 2026-11-23T10:00:00Z)") from exc
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _text(raw: dict[str, Any], field: str, default: str = "") -> str:
    value = raw.get(field, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string")
    if len(value) > MAX_TEXT[field]:
        raise ValueError(f"{field} is longer than {MAX_TEXT[field]} characters")
    return value


def normalize_event(
    raw: Any,
    *,
    now: datetime,
    max_age: timedelta,
    max_future: timedelta,
) -> dict[str, Any]:
    """Return the normalized event or raise ``ValueError`` with the reason it is invalid."""
    if not isinstance(raw, dict):
        raise ValueError(f"an event must be a JSON object, got {type(raw).__name__}")
    missing = [f for f in ("event", "timestamp", "user_id") if f not in raw or raw[f] in (None, "")]
    if missing:
        raise ValueError(f"missing required field(s): {', '.join(missing)}")
    name = raw["event"]
    if not isinstance(name, str) or not EVENT_NAME.match(name):
        raise ValueError("event must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")
    ts = parse_timestamp(raw["timestamp"])
    if ts < now - max_age:
        raise ValueError(f"timestamp {format_ts(ts)} is older than the accepted {max_age.days} days")
    if ts > now + max_future:
        raise ValueError(f"timestamp {format_ts(ts)} is more than {int(max_future.total_seconds())} s in the future")
    user = raw["user_id"]
    if isinstance(user, bool) or not isinstance(user, int | str):
        raise ValueError("user_id must be a string or an integer")
    user_id = str(user)
    if len(user_id) > MAX_TEXT["user_id"]:
        raise ValueError(f"user_id is longer than {MAX_TEXT['user_id']} characters")
    revenue = raw.get("revenue", 0.0)
    if revenue is None:
        revenue = 0.0
    if isinstance(revenue, bool) or not isinstance(revenue, int | float) or not math.isfinite(revenue):
        raise ValueError("revenue must be a finite number")
    properties = raw.get("properties") or {}
    if not isinstance(properties, dict):
        raise ValueError("properties must be a JSON object")
    extra = {k: v for k, v in raw.items() if k not in KNOWN_FIELDS}
    return {
        "tenant": _text(raw, "tenant", "default") or "default",
        "event": name,
        "timestamp": format_ts(ts),
        "event_id": _text(raw, "event_id") or str(uuid.uuid4()),
        "user_id": user_id,
        "page": _text(raw, "page"),
        "country": _text(raw, "country"),
        "device": _text(raw, "device"),
        "revenue": float(revenue),
        "properties": json.dumps({**extra, **properties}, separators=(",", ":"), sort_keys=True) if (
            extra or properties) else "",
        "received_at": format_ts(now),
    }
