"""``POST /events``' shortcut for plain events gives exactly what the contract gives, or leaves the event to it.

The truth is ``common.events.normalize_event``. Every event below goes through both: the shortcut must
either return None (the route then asks ``normalize_event``) or the very dictionary ``normalize_event``
returns, keys in the same order (the bytes on Kafka), and never accept what the contract rejects.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from common.events import format_ts, normalize_event
from ingest.fast_contract import PlainEvents

NOW = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
MAX_AGE, MAX_FUTURE = timedelta(days=30), timedelta(minutes=5)
FIELDS = ["event", "timestamp", "user_id", "tenant", "event_id", "page", "country", "device", "revenue"]
ODD_VALUES = [
    None, "", 0, 7, -3, 2**53, 2**53 + 1, 2**62, 10**400, 1.25, -0.0, float("inf"), float("nan"), True, False, [1],
    {"a": 1}, "x" * 64, "x" * 65, "x" * 128, "x" * 129, "x" * 2048, "x" * 2049, "ünïcode", "a\n", "page_view",
    "bad name!", "2026-11-23T11:59:00Z", "2026-11-23T11:59:00.000Z", "2026-11-23T11:59:00.000+00:00",
    "2026-02-30T11:59:00.000Z", "2026-11-23T24:00:00.000Z", "2026-11-23T23:59:60.000Z", "0000-01-01T00:00:00.000Z",
    "2099-01-01T00:00:00.000Z", "２０２６-11-23T11:59:00.000Z", "2026-11-23t11:59:00.000Z", "2026-11-23T11:59:00.000z",
    format_ts(NOW - MAX_AGE), format_ts(NOW - MAX_AGE + timedelta(milliseconds=1)),
    format_ts(NOW - MAX_AGE - timedelta(milliseconds=1)), format_ts(NOW + MAX_FUTURE),
    format_ts(NOW + MAX_FUTURE - timedelta(milliseconds=1)), format_ts(NOW + MAX_FUTURE + timedelta(milliseconds=1)),
]


def plain(**overrides: Any) -> dict[str, Any]:
    body = {"event": "page_view", "timestamp": "2026-11-23T11:58:00.000Z", "user_id": "u1", "tenant": "acme",
            "event_id": "id-1", "page": "/p", "country": "DE", "device": "mobile", "revenue": 1.5}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


def contract(raw: Any) -> dict[str, Any] | str:
    try:
        return normalize_event(raw, now=NOW, max_age=MAX_AGE, max_future=MAX_FUTURE)
    except (ValueError, OverflowError) as exc:
        return f"rejected: {exc}"


def check(raw: Any) -> bool:
    """Both paths on ``raw``; True when the shortcut took it."""
    fast = PlainEvents(now=NOW, max_age=MAX_AGE, max_future=MAX_FUTURE).plain_event(raw)
    if fast is None:
        return False
    truth = contract(raw)
    assert isinstance(truth, dict), (raw, truth)  # never accepts what the contract rejects
    if not raw.get("event_id"):  # a generated id is random on both paths
        truth["event_id"] = fast["event_id"]
    assert orjson.dumps(fast) == orjson.dumps(truth), raw
    return True


def test_a_plain_event_takes_the_shortcut_with_the_contracts_output() -> None:
    assert check(plain())
    assert check(plain(user_id=12345, revenue=3, tenant=_DROP, page=None, event_id=_DROP))
    assert check(plain(tenant="", country=_DROP, device=_DROP, revenue=None))


@pytest.mark.parametrize("field", FIELDS)
def test_every_odd_value_in_every_field_agrees_with_the_contract(field: str) -> None:
    taken = 0
    for value in [*ODD_VALUES, _DROP]:
        taken += check(plain(**{field: value}))
    assert taken >= 1  # some values of every field are taken the short way


def test_what_the_shortcut_leaves_to_the_contract() -> None:
    for raw in (plain(properties={"a": 1}), plain(properties=""), plain(extra="kept"), plain(event="a\n"),
                plain(timestamp="2026-11-23T11:58:00Z"), plain(revenue=True), plain(user_id=""),
                ["not", "an", "object"], "text", None, 3):
        assert not check(raw)


def test_random_events_agree_with_the_contract() -> None:
    rng = random.Random(16)
    taken = 0
    for _ in range(3000):
        fields = {f: rng.choice([*ODD_VALUES, _DROP]) if rng.random() < 0.3 else plain()[f] for f in FIELDS}
        taken += check(plain(**fields))
    assert taken > 100


def test_the_bounds_are_judged_at_the_millisecond_the_contract_judges() -> None:
    """Times one millisecond around each bound, with the clock at every sub-millisecond offset."""
    for micros, delta in itertools.product((0, 1, 499, 999), (-1, 0, 1)):
        now = NOW.replace(microsecond=123000 + micros)
        for bound in (now - MAX_AGE, now + MAX_FUTURE):
            raw = plain(timestamp=format_ts(bound + timedelta(milliseconds=delta)))
            fast = PlainEvents(now=now, max_age=MAX_AGE, max_future=MAX_FUTURE).plain_event(raw)
            try:
                truth: Any = normalize_event(raw, now=now, max_age=MAX_AGE, max_future=MAX_FUTURE)
            except ValueError:
                truth = None
            assert fast is None or fast == truth, (now, raw)
