"""Day buckets in a zone across daylight-saving changes, and the previous period's alignment (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from serving.query.buckets import BadTimeZone, bucket_starts, empty_value, zone
from serving.query.compare import change, previous_period
from serving.query.spec import QuerySpec


def test_new_york_days_last_23_and_25_hours_when_the_clocks_change() -> None:
    spring = bucket_starts(datetime(2026, 3, 7, 5, tzinfo=UTC), datetime(2026, 3, 10, 4, tzinfo=UTC), "day",
                           "America/New_York")
    assert [b - a for a, b in zip(spring, spring[1:], strict=False)] == [86400, 23 * 3600]
    autumn = bucket_starts(datetime(2026, 10, 31, 4, tzinfo=UTC), datetime(2026, 11, 3, 5, tzinfo=UTC), "day",
                           "America/New_York")
    assert [b - a for a, b in zip(autumn, autumn[1:], strict=False)] == [86400, 25 * 3600]
    assert datetime.fromtimestamp(spring[0], UTC) == datetime(2026, 3, 7, 5, tzinfo=UTC)  # EST midnight


def test_minute_and_hour_buckets_cover_the_range_up_to_its_end() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert len(bucket_starts(start, start + timedelta(hours=2, seconds=1), "hour", "UTC")) == 3
    assert len(bucket_starts(start, start + timedelta(minutes=5), "minute", "Asia/Kolkata")) == 5


@pytest.mark.parametrize("name", ["Mars/Base", "../../etc/passwd", "", "x" * 80])
def test_only_iana_names_are_zones(name: str) -> None:
    with pytest.raises(BadTimeZone):
        zone(name)


def test_counts_fill_with_zero_and_unique_users_with_gaps() -> None:
    auto = (empty_value("events", "auto"), empty_value("revenue", "auto"), empty_value("users", "auto"))
    assert auto == (0, 0.0, None)
    assert (empty_value("users", "zero"), empty_value("events", "null")) == (0, None)


def test_the_previous_period_has_as_many_local_days_across_a_clock_change() -> None:
    start, end = datetime(2026, 3, 9, 4, tzinfo=UTC), datetime(2026, 3, 16, 4, tzinfo=UTC)  # EDT midnights
    spec = QuerySpec(("events",), start, end, "day", tz="America/New_York")
    before = previous_period(spec)
    assert before.end == start
    assert len(bucket_starts(before.start, before.end, "day", spec.tz)) == 7
    assert change(("events", "users"), [12, 5], [20, 0]) == {
        "events": {"current": 12, "previous": 20, "change": -8, "change_percent": -40.0},
        "users": {"current": 5, "previous": 0, "change": 5, "change_percent": None}}
