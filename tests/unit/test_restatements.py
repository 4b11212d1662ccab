"""A restatement announcement survives its trip through the Redis stream, and a malformed one is named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from common.restatements import RestatedHour


def test_an_announcement_round_trips_through_its_stream_fields_in_utc() -> None:
    hour = datetime(2026, 11, 23, 12, tzinfo=timezone(timedelta(hours=2)))
    announced = RestatedHour(hour, ("acme", "globex"))
    stored = {k.encode(): v.encode() for k, v in announced.fields().items()}  # as redis-py returns them

    restated = RestatedHour.from_fields(stored)

    assert restated == RestatedHour(datetime(2026, 11, 23, 10, tzinfo=UTC), ("acme", "globex"))
    assert restated.end - restated.hour == timedelta(hours=1)


@pytest.mark.parametrize("fields", [
    {},
    {"hour": "yesterday", "tenants": "[]"},
    {"hour": "2026-11-23T10:00:00", "tenants": "[]"},  # no offset: which hour is meant is unknown
    {"hour": "2026-11-23T10:00:00+00:00", "tenants": "acme"},
    {"hour": "2026-11-23T10:00:00+00:00", "tenants": "[1, 2]"},
])
def test_a_malformed_announcement_is_refused_with_its_content(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="not a restatement announcement"):
        RestatedHour.from_fields(fields)
