"""The metric query compiler: names only from whitelists, user values only as typed parameters."""

from datetime import UTC, datetime, timedelta

import pytest

from serving.metric_query import QueryError, build_request, compile_series

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def request(**kw):
    args = {"name": "page_views", "tenant": "acme", "range_text": "7d", "start": None, "end": None,
            "group_by": None, "filters": [], "granularity": None, "now": NOW}
    args.update(kw)
    return build_request(**args)


def test_filters_and_group_by_compile_to_parameters():
    sql, params = compile_series(request(group_by="country", filters=["device:mobile", "device:tablet"]))
    assert "country," in sql and "GROUP BY bucket , country" in sql
    assert "device IN {f_device:Array(String)}" in sql
    assert params["f_device"] == ["mobile", "tablet"]
    assert params["metric_event"] == "page_view"
    assert params["tenant"] == "acme"
    assert params["bucket_seconds"] == 86400
    assert params["start"] == (NOW - timedelta(days=7)).replace(tzinfo=None)


def test_a_hostile_filter_value_never_reaches_the_sql_text():
    evil = "x') OR 1=1 --"
    sql, params = compile_series(request(filters=[f"country:{evil}"]))
    assert evil not in sql
    assert params["f_country"] == [evil]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"name": "drop table"}, "unknown metric"),
        ({"group_by": "user_id"}, "unknown dimension 'user_id' in group_by"),
        ({"filters": ["tenant:other"]}, "unknown dimension 'tenant' in filter"),
        ({"filters": ["mobile"]}, "is not dimension:value"),
        ({"range_text": "7 days"}, "is not like 15m"),
        ({"range_text": "30d"}, "beyond the hot tier"),
        ({"granularity": "week"}, "unknown granularity"),
    ],
)
def test_bad_requests_name_what_is_accepted(kw, message):
    with pytest.raises(QueryError, match=message):
        request(**kw)


@pytest.mark.parametrize(("range_text", "granularity"), [("15m", "minute"), ("3h", "minute"), ("24h", "hour"),
                                                          ("7d", "day")])
def test_granularity_follows_the_range(range_text, granularity):
    assert request(range_text=range_text).granularity == granularity
