"""The event contract's common case for ``POST /events``: one shortcut per event, no second rule.

``common.events.normalize_event`` is the contract. It was most of the API's CPU per event (about half of
10 µs on a loaded machine): a call per text field, a datetime per timestamp compared with two others,
the general handling of properties and unknown fields. Most events a client sends are plain: the
known fields only, no ``properties``, texts within their limits, a canonical timestamp
(``2026-11-23T10:00:00.123Z``, what the API writes and most clients send).

``plain_event`` normalizes such an event with the fewest steps and returns ``None`` for anything else
(a missing or odd-typed field, properties, an unknown field, a non-canonical or boundary time, any
value ``normalize_event`` would reject or could change), which then goes through ``normalize_event``
for its output or its reason. So it only ever *accepts* what ``normalize_event`` accepts, with the same
output (the same dictionary, keys in the same order, hence the same bytes on Kafka); the two are
compared on valid, invalid and edge-case events in ``tests/unit/test_ingest_fast_contract.py``.

Canonical timestamps sort as text in time order, so the bounds (not older than ``max_age``, not further
than ``max_future`` ahead) are two string comparisons with the bounds written the same way; an event
exactly at a bound's millisecond goes the long way, where the microseconds decide.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from common.events import _CANONICAL_TS, EVENT_NAME, KNOWN_FIELDS, MAX_TEXT, format_ts

# The fields a plain event may carry: the known ones except ``properties`` (merged with unknown fields,
# sorted and re-serialized: the general path's job).
PLAIN_FIELDS = frozenset(KNOWN_FIELDS - {"properties"})
_MAX_EXACT = 2**53  # integers up to this are exact as floats
_MAX_PAGE, _MAX_SHORT, _MAX_ID = MAX_TEXT["page"], MAX_TEXT["country"], MAX_TEXT["event_id"]
assert MAX_TEXT["device"] == MAX_TEXT["tenant"] == _MAX_SHORT and MAX_TEXT["user_id"] == _MAX_ID


class PlainEvents:
    """``plain_event`` for the events of one request: the bounds and the receive time written once."""

    def __init__(self, *, now: datetime, max_age: timedelta, max_future: timedelta) -> None:
        now = now.astimezone(UTC)
        self.oldest = format_ts(now - max_age)  # accepted times lie strictly between these two texts
        self.newest = format_ts(now + max_future)
        self.received_at = format_ts(now)
        self._names: set[str] = set()  # event names seen valid in this request

    def plain_event(self, raw: Any) -> dict[str, Any] | None:
        """The normalized event, as ``normalize_event(raw, now=…, max_age=…, max_future=…)`` returns it, or
        None when ``raw`` is not a plain event (then ``normalize_event`` decides)."""
        if type(raw) is not dict or not raw.keys() <= PLAIN_FIELDS:
            return None
        name = raw.get("event")
        if type(name) is not str or (name not in self._names and not self._valid_name(name)):
            return None
        stamp = raw.get("timestamp")
        if (type(stamp) is not str or len(stamp) != 24 or not self.oldest < stamp < self.newest
                or not _CANONICAL_TS.fullmatch(stamp)):
            return None
        try:
            datetime.fromisoformat(stamp[:23])  # a real date and time (no month 13), as the long way checks
        except ValueError:
            return None
        user = raw.get("user_id")
        if type(user) is int:
            user = str(user)
        elif type(user) is not str or not user:
            return None
        if len(user) > _MAX_ID:
            return None
        tenant = raw.get("tenant")
        if tenant is None or tenant == "":
            tenant = "default"
        elif type(tenant) is not str or len(tenant) > _MAX_SHORT:
            return None
        event_id = raw.get("event_id")
        if event_id is None or event_id == "":
            event_id = str(uuid.uuid4())
        elif type(event_id) is not str or len(event_id) > _MAX_ID:
            return None
        page = raw.get("page")
        if page is None:
            page = ""
        elif type(page) is not str or len(page) > _MAX_PAGE:
            return None
        country = raw.get("country")
        if country is None:
            country = ""
        elif type(country) is not str or len(country) > _MAX_SHORT:
            return None
        device = raw.get("device")
        if device is None:
            device = ""
        elif type(device) is not str or len(device) > _MAX_SHORT:
            return None
        revenue = raw.get("revenue")
        if revenue is None:
            revenue = 0.0
        elif type(revenue) is float:
            if not math.isfinite(revenue):
                return None
        elif type(revenue) is int and -_MAX_EXACT <= revenue <= _MAX_EXACT:
            revenue = float(revenue)  # (larger integers go the long way, whatever it makes of them)
        else:
            return None
        return {"tenant": tenant, "event": name, "timestamp": stamp, "event_id": event_id, "user_id": user,
                "page": page, "country": country, "device": device, "revenue": revenue, "properties": "",
                "received_at": self.received_at}

    def _valid_name(self, name: str) -> bool:
        if EVENT_NAME.match(name) is None or name.endswith("\n"):  # (``$`` also matches before a final newline)
            return False
        if len(self._names) < 256:
            self._names.add(name)
        return True
