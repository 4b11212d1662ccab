"""The event contract: every rule a client can break gets its own reason."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from common.events import format_optional_ts, format_ts, normalize_event, parse_timestamp, timestamp_and_text

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LIMITS = {"now": NOW, "max_age": timedelta(days=30), "max_future": timedelta(minutes=5)}


def valid(**overrides):
    event = {"event": "page_view", "timestamp": "2026-11-23T11:59:00Z", "user_id": 123, "page": "/product",
             "country": "US", "device": "mobile"}
    event.update(overrides)
    return event


def test_a_valid_event_is_normalized_with_generated_id_and_default_tenant():
    out = normalize_event(valid(), **LIMITS)
    assert out["tenant"] == "default"
    assert out["user_id"] == "123"
    assert len(out["event_id"]) == 36
    assert out["timestamp"] == "2026-11-23T11:59:00.000Z"
    assert out["received_at"] == "2026-11-23T12:00:00.000Z"
    assert out["revenue"] == 0.0


def test_offsets_are_converted_to_utc_and_naive_times_are_taken_as_utc():
    assert normalize_event(valid(timestamp="2026-11-23T12:59:00+01:00"), **LIMITS)["timestamp"] == (
        "2026-11-23T11:59:00.000Z")
    assert normalize_event(valid(timestamp="2026-11-23T11:59:00"), **LIMITS)["timestamp"] == "2026-11-23T11:59:00.000Z"


def test_unknown_fields_are_kept_in_properties():
    out = normalize_event(valid(campaign="winter", properties={"ab": "b"}), **LIMITS)
    assert out["properties"] == '{"ab":"b","campaign":"winter"}'


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"timestamp": "2026-11-23T11:59:00Z", "user_id": 1}, "missing required field(s): event"),
        (valid(timestamp="noon"), "is not ISO-8601"),
        (valid(timestamp=1700000000), "timestamp must be an ISO-8601 string"),
        (valid(timestamp="2025-01-01T00:00:00Z"), "older than the accepted 30 days"),
        (valid(timestamp="2026-11-23T12:10:00Z"), "in the future"),
        (valid(user_id={"id": 1}), "user_id must be a string or an integer"),
        (valid(user_id=True), "user_id must be a string or an integer"),
        (valid(event="bad name!"), "event must be 1-64 characters"),
        (valid(revenue="a lot"), "revenue must be a finite number"),
        (valid(revenue=float("nan")), "revenue must be a finite number"),
        (valid(country=5), "country must be a string"),
        (valid(properties=[1]), "properties must be a JSON object"),
        ([1, 2], "an event must be a JSON object"),
    ],
)
def test_invalid_events_are_rejected_with_their_reason(event, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        normalize_event(event, **LIMITS)


def test_times_are_written_one_way_in_utc_with_z() -> None:
    paris = datetime(2026, 11, 23, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    assert format_ts(paris) == "2026-11-23T10:00:00.000Z"
    assert format_ts(paris, "auto") == "2026-11-23T10:00:00Z"
    assert format_ts(paris.replace(microsecond=250_000), "auto") == "2026-11-23T10:00:00.250000Z"
    assert format_optional_ts(None) is None


@pytest.mark.parametrize("value", [
    "2026-11-23T10:00:00.123Z",  # canonical: its own text (the fast path)
    "2026-11-23T10:00:00Z", "2026-11-23T10:00:00.123456Z", "2026-11-23T11:00:00.123+01:00",
    "2026-11-23T10:00:00.123", "2026-11-23 10:00:00.123Z", "2026-11-23T10:00:00,123Z", "2026-W47-4T10:00:00.123Z",
])
def test_the_canonical_shortcut_gives_what_parsing_and_formatting_give(value: str) -> None:
    ts = parse_timestamp(value)
    assert timestamp_and_text(value) == (ts, format_ts(ts))


@pytest.mark.parametrize("value", [
    "2026-13-23T10:00:00.123Z", "2026-02-30T10:00:00.123Z", "2026-11-23T24:00:00.123Z",
    "２０２６-11-23T10:00:00.123Z", 20261123, "2026-11-23T10:00:00.12aZ",
])
def test_the_canonical_shortcut_rejects_what_parsing_rejects_with_the_same_reason(value) -> None:
    with pytest.raises(ValueError) as parsed:
        parse_timestamp(value)
    with pytest.raises(ValueError) as shortcut:
        timestamp_and_text(value)
    assert str(shortcut.value) == str(parsed.value)


def test_the_receive_time_of_consecutive_requests_is_not_reused_across_instants() -> None:
    bounds = {"max_age": timedelta(days=1), "max_future": timedelta(minutes=5)}
    first = datetime(2026, 11, 23, 10, 0, 0, 1000, tzinfo=UTC)
    second = first + timedelta(milliseconds=1)
    event = {"event": "e", "timestamp": "2026-11-23T10:00:00Z", "user_id": 1}
    assert normalize_event(event, now=first, **bounds)["received_at"] == "2026-11-23T10:00:00.001Z"
    assert normalize_event(event, now=second, **bounds)["received_at"] == "2026-11-23T10:00:00.002Z"
    assert normalize_event(event, now=first, **bounds)["received_at"] == "2026-11-23T10:00:00.001Z"
