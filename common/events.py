"""The event contract: what a client may send, and the normalized form every stage reads.

Validation is pure logic (no I/O) so the API, the stream, the tests and the synthetic generator
agree on it: ``POST /events`` applies ``normalize_event`` to each event of a request, and the stream
applies ``events_of_record`` (the same rules, through the same function) to every Kafka record of
the ``events`` topic, whoever wrote it. ``docs/ingestion-contract.md`` lists the rules and what
happens to a record or event that breaks each of them.

A client may omit ``event_id`` (one is generated) and ``tenant`` (``default``); unknown top-level
fields are kept in ``properties`` rather than dropped, so nothing a client sent is lost.
"""

from __future__ import annotations

import base64
import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa

EVENT_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
KNOWN_FIELDS = {"event", "timestamp", "user_id", "tenant", "event_id", "page", "country", "device", "revenue",
                "properties"}
_REQUIRED = ("event", "timestamp", "user_id")
_KNOWN_FROM_KAFKA = KNOWN_FIELDS | {"received_at"}  # stamped by the API, read back by the stream
MAX_TEXT = {"page": 2048, "country": 64, "device": 64, "tenant": 64, "event_id": 128, "user_id": 128}
MAX_PROPERTIES_CHARS = 65_536  # properties sent as JSON text (the normalized form); an object is bounded by the body
MAX_DEAD_LETTER_BYTES = 4096  # a dead letter keeps the first 4 KB of the bytes it rejects

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


IDEMPOTENCY_NAMESPACE = uuid.UUID("6f0b6a52-3f4e-4d0c-9a57-2f1c8c1e5b1d")
MAX_IDEMPOTENCY_KEY = 128


def idempotent_event_id(key: str, index: int) -> str:
    """The id of event ``index`` of a request sent with ``Idempotency-Key: key`` and no ``event_id``.

    The same key and position give the same id, so a retried request (after a 503 or a lost answer)
    carries the ids of the first attempt and the stream counts each event once per tenant.
    """
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{key}\n{index}"))


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


# The canonical form ``format_ts`` writes (what the API puts on Kafka), ASCII digits only.
_CANONICAL_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


def timestamp_and_text(value: Any) -> tuple[datetime, str]:
    """``parse_timestamp(value)`` and its ``format_ts`` text at once.

    A time already in the canonical form is its own text, which skips ``isoformat``: writing the two
    times of an event out again was the costliest step of validating it (about a third of the
    stream's per-event cost, since the API's events arrive canonical). Anything else, invalid dates
    such as month 13 included, takes the general path and its error message.
    """
    if isinstance(value, str) and len(value) == 24 and _CANONICAL_TS.fullmatch(value):
        try:
            return datetime.fromisoformat(value[:23]).replace(tzinfo=UTC), value
        except ValueError:
            pass
    ts = parse_timestamp(value)
    return ts, format_ts(ts)


_last_stamp: tuple[datetime | None, str] = (None, "")


def _stamp_text(ts: datetime) -> str:
    """``format_ts`` of a receive time, remembered: every event of a request or a record shares it."""
    global _last_stamp
    last, text = _last_stamp
    if last is not None and last == ts and last.tzinfo is ts.tzinfo:
        return text
    text = format_ts(ts)
    _last_stamp = (ts, text)
    return text


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
    value = raw.get(field)
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
    received_at: datetime | None = None,
    default_event_id: str | None = None,
) -> dict[str, Any]:
    """Return the normalized event or raise ``ValueError`` with the reason it is invalid.

    ``now`` is the instant the time bounds are judged against: the API's clock for ``POST /events``,
    the record's Kafka timestamp (never later than the stream's clock) for a record read from Kafka,
    so that a producer whose clock is wrong cannot push events into the future. ``received_at`` given
    means the event comes from Kafka: a ``received_at`` already in the event (stamped by the API) is
    kept, otherwise this one is stamped; ``default_event_id`` is then the id of an event without one
    (deterministic, so that a replayed record yields the same ids).
    """
    if not isinstance(raw, dict):
        raise ValueError(f"an event must be a JSON object, got {_json_type(raw)}")
    name, stamp, user = raw.get("event"), raw.get("timestamp"), raw.get("user_id")
    if name is None or name == "" or stamp is None or stamp == "" or user is None or user == "":
        missing = [f for f in _REQUIRED if raw.get(f) is None or raw[f] == ""]
        raise ValueError(f"missing required field(s): {', '.join(missing)}")
    if not isinstance(name, str) or not EVENT_NAME.match(name):
        raise ValueError("event must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")
    ts, ts_text = timestamp_and_text(stamp)
    if ts < now - max_age:
        raise ValueError(f"timestamp {format_ts(ts)} is older than the accepted {max_age.days} days")
    if ts > now + max_future:
        raise ValueError(f"timestamp {format_ts(ts)} is more than {int(max_future.total_seconds())} s in the future")
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
    properties = _properties(raw.get("properties"))
    known = KNOWN_FIELDS if received_at is None else _KNOWN_FROM_KAFKA
    extra = {k: raw[k] for k in raw.keys() - known} if len(raw) > 3 else {}  # 3 required fields are known
    stamped = _stamp_text(now) if received_at is None else _stamp(raw.get("received_at"), received_at)
    return {
        "tenant": _text(raw, "tenant", "default") or "default",
        "event": name,
        "timestamp": ts_text,
        "event_id": _text(raw, "event_id") or default_event_id or str(uuid.uuid4()),
        "user_id": user_id,
        "page": _text(raw, "page"),
        "country": _text(raw, "country"),
        "device": _text(raw, "device"),
        "revenue": float(revenue),
        "properties": json.dumps({**extra, **properties}, separators=(",", ":"), sort_keys=True) if (
            extra or properties) else "",
        "received_at": stamped,
    }


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _properties(value: Any) -> dict[str, Any]:
    """``properties`` as a client sends it (an object) or as the normalized form carries it (its JSON text)."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        if len(value) > MAX_PROPERTIES_CHARS:
            raise ValueError(f"properties is longer than {MAX_PROPERTIES_CHARS} characters")
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("properties must be a JSON object") from None
    if not isinstance(value, dict):
        raise ValueError("properties must be a JSON object")
    return value


def _stamp(value: Any, default: datetime) -> str:
    """The receive time an upstream ingestion point stamped, if it is a valid one, else ``default`` (as text)."""
    if isinstance(value, str):
        try:
            return timestamp_and_text(value)[1]
        except ValueError:
            pass
    return _stamp_text(default)


# --------------------------------------------------------------------------- records read from Kafka


@dataclass(frozen=True)
class DeadEvent:
    """A record, or one event of a record's array, that broke the contract: it goes to the DLQ."""

    index: int  # position in the record's array; -1 when the whole record is rejected
    reason: str
    raw: bytes  # the record's bytes (whole record) or the event's JSON (one event of an array)


def events_of_record(
    value: bytes | None,
    *,
    partition: int,
    offset: int,
    kafka_time: datetime | None,
    now: datetime,
    max_age: timedelta,
    max_future: timedelta,
    topic: str = "events",
) -> tuple[list[tuple[int, dict[str, Any]]], list[DeadEvent]]:
    """The events a Kafka record holds, normalized with their index, and what breaks the contract.

    A record is one event object (any producer) or a JSON array of event objects (the API packs up
    to 200 per record). Each event of an array is judged alone, as the API judges each event of a
    request: the good ones go through, each bad one is dead-lettered with its index. Time bounds are
    judged against the record's Kafka timestamp, capped at ``now`` (the stream's clock): a producer
    cannot move the bound by stamping its records in the future, and a replay judges a record as the
    first run did. An event without ``event_id`` gets ``kafka:<topic>:<partition>:<offset>:<index>``.
    """
    received = now if kafka_time is None or kafka_time.year < 2000 else min(kafka_time, now)
    if value is None:
        return [], [DeadEvent(-1, "record has no value (a tombstone); send a JSON event object or array", b"")]
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return [], [DeadEvent(-1, f"record is not valid JSON ({exc}); send a JSON event object or array", value)]
    if isinstance(parsed, dict):
        items, whole = [parsed], True
    elif isinstance(parsed, list):
        items, whole = parsed, False
    else:
        reason = f"a record must hold a JSON event object or an array of them, got {_json_type(parsed)}"
        return [], [DeadEvent(-1, reason, value)]
    good: list[tuple[int, dict[str, Any]]] = []
    dead: list[DeadEvent] = []
    for index, item in enumerate(items):
        try:
            good.append((index, normalize_event(
                item, now=received, max_age=max_age, max_future=max_future, received_at=received,
                default_event_id=f"kafka:{topic}:{partition}:{offset}:{index}")))
        except ValueError as exc:
            dead.append(DeadEvent(-1 if whole else index, str(exc), value if whole else orjson.dumps(item)))
    return good, dead


def dead_letter(
    dead: DeadEvent, *, topic: str, partition: int, offset: int, kafka_time: datetime | None, now: datetime
) -> dict[str, Any]:
    """The dead-letter record of ``dead``: reason, where it came from, and its bytes (the first
    ``MAX_DEAD_LETTER_BYTES``; ``raw_truncated`` and ``raw_bytes`` say when it was cut)."""
    head = dead.raw[:MAX_DEAD_LETTER_BYTES]
    try:
        text, encoding = head.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(head).decode("ascii"), "base64"
    return {
        "source": "stream",
        "reason": dead.reason,
        "reason_class": reason_class(dead.reason),
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "index": dead.index,
        "kafka_timestamp": format_ts(kafka_time) if kafka_time is not None else None,
        "received_at": format_ts(now),
        "raw": text,
        "raw_encoding": encoding,
        "raw_bytes": len(dead.raw),
        "raw_truncated": len(dead.raw) > MAX_DEAD_LETTER_BYTES,
    }


_REASON_CLASSES = (
    ("record is not valid JSON", "not_json"),
    ("record has no value", "no_value"),
    ("a record must hold", "not_an_object"),
    ("an event must be a JSON object", "not_an_object"),
    ("tenant", "wrong_tenant"),
    ("missing required field", "missing_field"),
    ("event must be", "invalid_event_name"),
    ("timestamp", "invalid_timestamp"),  # refined below: too old / in the future
    ("user_id", "invalid_user_id"),
    ("revenue", "invalid_revenue"),
    ("properties", "invalid_properties"),
)


def reason_class(reason: str) -> str:
    """A bounded label for a rejection reason (metrics); the full reason goes to the dead-letter topic."""
    if reason.startswith("timestamp") and "older than" in reason:
        return "too_old"
    if reason.startswith("timestamp") and "in the future" in reason:
        return "in_future"
    if reason.startswith("tenant") and "is not the tenant" not in reason:
        return "invalid_field"  # mistyped or too long, not a key naming another tenant
    for prefix, label in _REASON_CLASSES:
        if reason.startswith(prefix):
            return label
    return "invalid_field"
