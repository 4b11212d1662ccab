"""Pure logic of the query path: validation, routing by tier, SQL compilation and merging."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from serving.query.engine import _merge, engine_shape
from serving.query.spec import QueryError, SpecInput, build_spec, parse_filter_params
from serving.query.sql_compile import compile_segment
from serving.query.tier_routing import Horizons, plan

NOW = datetime(2026, 11, 23, 13, 27, 31, tzinfo=UTC)


def spec(**kwargs):
    return build_spec(SpecInput(**{"metrics": ["events"], **kwargs}), now=NOW)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": ["nope"]}, "unknown metric 'nope'"),
        ({"dimensions": ["tenant"]}, "unknown dimension 'tenant'"),
        ({"filters": [{"field": "tenant", "op": "=", "value": "other"}]}, "unknown filter field 'tenant'"),
        ({"filters": [{"field": "country", "op": "like", "value": "%"}]}, "unknown dimension filter operator"),
        ({"filters": [{"field": "events", "op": "between", "values": [1]}]}, "takes two values"),
        ({"filters": [{"field": "events", "op": ">", "value": "lots"}]}, "compares numbers"),
        ({"range": "7w"}, "is not like"),
        ({"granularity": "week"}, "unknown granularity"),
        ({"order_by": [{"field": "country"}]}, "unknown order_by field"),
        ({"limit": 0}, "limit must be"),
        ({"tier": "lukewarm"}, "unknown tier"),
        ({"range": "7y", "granularity": "minute"}, "exceed 50,000 points"),
    ],
)
def test_invalid_specs_are_refused_naming_what_is_accepted(kwargs, message):
    with pytest.raises(QueryError, match=message):
        spec(**kwargs)


def test_get_style_filters():
    assert parse_filter_params(["country:US", "device!=mobile", "page:/a|/b"]) == [
        {"field": "country", "op": "=", "values": ["US"]},
        {"field": "device", "op": "!=", "values": ["mobile"]},
        {"field": "page", "op": "in", "values": ["/a", "/b"]},
    ]
    with pytest.raises(QueryError, match="dimension:value"):
        parse_filter_params(["country"])


def tables(segments):
    return [(s.source.table, s.start, s.end) for s in segments]


def test_recent_ranges_stay_in_the_hot_tier():
    assert tables(plan(spec(range="1h", granularity="minute"), NOW, Horizons())) == [
        ("rollups_1m", datetime(2026, 11, 23, 12, 27, tzinfo=UTC), NOW)]
    assert [t for t, *_ in tables(plan(spec(range="30d", granularity="day"), NOW, Horizons()))] == ["rollups_1h"]


def test_day_buckets_past_the_hot_tier_come_from_the_daily_rollups():
    segments = plan(spec(range="7y", granularity="day"), NOW, Horizons())
    assert [s.source.table for s in segments] == ["rollups_daily", "rollups_1h"]
    assert segments[1].start == datetime(2026, 8, 26, tzinfo=UTC)


def test_a_seven_year_total_is_cut_where_neighbouring_rows_both_end():
    segments = plan(spec(range="7y"), NOW, Horizons())  # totals: hourly rollups between 90 days and 1 year
    assert [s.source.table for s in segments] == ["rollups_daily", "rollups_hourly", "rollups_1h"]
    assert segments[0].start == datetime(2019, 11, 25, tzinfo=UTC)  # the first day is read whole
    for older, newer in zip(segments, segments[1:], strict=False):
        assert older.end == newer.start
    # daily rows end at midnight: the cold/warm cut is the first midnight inside the warm horizon;
    # the warm/hot cut only needs an hour boundary
    assert segments[1].start == datetime(2025, 11, 24, tzinfo=UTC)
    assert segments[2].start == datetime(2026, 8, 25, 14, tzinfo=UTC)
    assert segments[-1].end == NOW


def test_fine_buckets_beyond_their_horizon_are_refused():
    with pytest.raises(QueryError, match="minute buckets reach back 7 days"):
        plan(spec(range="8d", granularity="minute"), NOW, Horizons())
    with pytest.raises(QueryError, match="hour buckets reach back 365 days"):
        plan(spec(range="400d", granularity="hour"), NOW, Horizons())


def test_a_forced_tier_answers_the_whole_range():
    assert tables(plan(spec(range="7d", granularity="day", tier="cold"), NOW, Horizons())) == [
        ("rollups_daily", datetime(2026, 11, 16, tzinfo=UTC), NOW)]
    with pytest.raises(QueryError, match="no minute buckets"):
        plan(spec(range="1h", granularity="minute", tier="warm"), NOW, Horizons())


def test_user_values_never_reach_the_sql_text():
    crafted = "x' OR 1=1 --"
    query = spec(range="1y", dimensions=["page"], filters=[{"field": "page", "op": "in", "values": [crafted]},
                                                           {"field": "country", "op": "!=", "value": crafted}])
    for segment in plan(query, NOW, Horizons()):
        sql, params = compile_segment(query, segment, crafted, whole=False)
        assert crafted not in sql
        assert crafted in params.values() or [crafted] in params.values()
        assert params["tenant"] == crafted


def test_pieces_of_a_split_range_are_added_then_filtered_ordered_and_limited():
    query = spec(range="1y", dimensions=["country"], metrics=["events", "revenue"],
                 filters=[{"field": "events", "op": ">=", "value": 3}], order_by=[{"field": "events"}], limit=2)
    pieces = [
        [{"country": "US", "events": 2, "revenue": 1.0}, {"country": "DE", "events": 1, "revenue": 0.5}],
        [{"country": "US", "events": 3, "revenue": 2.0}, {"country": "FR", "events": 4, "revenue": 0.0},
         {"country": "DE", "events": 1, "revenue": 0.0}],
    ]
    assert _merge(query, pieces) == [{"country": "US", "events": 5, "revenue": 3.0},
                                     {"country": "FR", "events": 4, "revenue": 0.0}]


@pytest.mark.parametrize(
    ("kwargs", "shape", "day_rows"),
    [
        ({"granularity": "hour"}, "total", False),
        ({"metrics": ["unique_users", "revenue"], "granularity": "day"}, "total", True),
        ({"metrics": ["unique_users"], "granularity": "day", "tz": "Europe/Paris"}, "total", False),
        ({"metrics": ["page_views"]}, "event", True),
        ({"filters": [{"field": "page_views", "op": ">", "value": 3}]}, "event", True),  # HAVING on one event
        ({"order_by": [{"field": "events"}], "dimensions": ["event"]}, "event", True),
        ({"filters": [{"field": "event", "op": "=", "value": "click"}]}, "event", True),
        ({"dimensions": ["country"]}, "country", True),
        ({"dimensions": ["event", "device"]}, "device", True),
        ({"metrics": ["clicks"], "filters": [{"field": "page", "op": "in", "values": ["/a"]}]}, "page", True),
        ({"dimensions": ["device"], "filters": [{"field": "country", "op": "=", "value": "DE"}]}, "full", True),
    ],
)
def test_the_narrowest_shape_of_the_day_copies_holds_every_dimension_and_event_a_question_uses(kwargs, shape,
                                                                                                 day_rows):
    """A shape drops dimensions (and 'total' the event): a question read from one that lacks a column it groups,
    filters, orders or measures by would answer wrong, so the choice is checked for each way a column is used."""
    assert engine_shape(spec(**kwargs)) == (shape, day_rows)
