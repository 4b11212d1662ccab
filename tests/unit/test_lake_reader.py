"""The cold query compiler: whitelisted names in the SQL text, user values only as parameters, clear refusals."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from storage_tiers.cold_query import TierQuery, TierQueryError, compile_query

START, END = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 3, tzinfo=UTC)


def _spec(**changes: object) -> TierQuery:
    fields: dict[str, object] = dict(tenant="acme", dataset="rollups_hourly", measure="events", event=None,
                                     start=START, end=END, bucket_seconds=3600, group_by=[], filters=[])
    fields.update(changes)
    return TierQuery(**fields)  # type: ignore[arg-type]


def test_values_travel_as_parameters_and_the_day_range_is_half_open() -> None:
    sql, params = compile_query(_spec(tenant="x' OR 1=1 --", event="purchase", group_by=["country"],
                                      filters=[("device", "=", "mobile'--"), ("page", "in", ["/", "/a"])]))
    assert "x' OR" not in sql and "mobile'--" not in sql and "purchase" not in sql
    assert params["tenant"] == "x' OR 1=1 --" and params["f0"] == "mobile'--" and params["f1"] == ["/", "/a"]
    assert (params["first_day"], params["last_day"]) == (date(2024, 3, 1), date(2024, 3, 2))  # END is exclusive
    assert "FROM lake_rollups_hourly($files)" in sql and "coalesce(country, '') AS country" in sql


def test_naive_instants_are_utc() -> None:
    _sql, params = compile_query(_spec(start=START.replace(tzinfo=None), end=END.replace(tzinfo=None)))
    assert params["start"] == START and params["end"] == END


@pytest.mark.parametrize(("changes", "message"), [
    ({"dataset": "events"}, "unknown dataset"),
    ({"measure": "clicks"}, "unknown measure"),
    ({"tenant": ""}, "tenant"),
    ({"bucket_seconds": 1800}, "multiple of 3600"),
    ({"dataset": "rollups_daily", "bucket_seconds": 3600}, "multiple of 86400"),
    ({"start": END, "end": START}, "range is empty"),
    ({"group_by": ["tenant"]}, "unknown dimension"),
    ({"group_by": ["page", "page"]}, "repeats"),
    ({"filters": [("country", "like", "D%")]}, "unknown filter operator"),
    ({"filters": [("country; DROP", "=", "x")]}, "unknown dimension"),
    ({"filters": [("country", "in", "DE")]}, "non-empty list"),
    ({"filters": [("country", "in", [])]}, "non-empty list"),
    ({"filters": [("country", "=", ["DE"])]}, "one string"),
    ({"filters": [("country", "=")]}, "is not (dimension, op, value)"),
])
def test_bad_queries_are_refused_with_what_is_accepted(changes: dict[str, object], message: str) -> None:
    with pytest.raises(TierQueryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_query(_spec(**changes))
