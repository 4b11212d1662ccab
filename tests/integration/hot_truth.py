"""What the hot tier holds for a test's tenant, and the comparison with the generator's ground truth.

Shared by the speed-layer and batch-layer tests so both judge the hot tier by the same rules: counts
and revenue exact, unique users within the documented 2 % of ``uniq``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from batch.hour_state import offsets_behind, parse_offsets
from common.hot_store import HotStore
from common.kafka_offsets import topic_end_offsets
from common.settings import Settings


def hot_minutes(hot: HotStore, tenant: str, hour: datetime | None = None) -> dict[datetime, dict[str, Any]]:
    """Per minute: events, revenue, unique users of ``tenant`` (in ``hour`` when given)."""
    in_hour = " AND toStartOfHour(minute) = {h:DateTime('UTC')}" if hour is not None else ""
    rows = hot.query_arrow(
        "SELECT toUInt32(minute) AS m, sum(events) AS events, sum(revenue) AS revenue, uniqMerge(users) AS users "
        f"FROM rollups_1m WHERE tenant = {{t:String}}{in_hour} GROUP BY m",
        {"t": tenant, **({"h": hour.replace(tzinfo=None)} if hour is not None else {})},
    ).to_pylist()
    return {datetime.fromtimestamp(r["m"], UTC): r for r in rows}


def late_rows_total(hot: HotStore) -> int:
    """Events the stream dropped as later than the watermark, over all its micro-batches."""
    sql = "SELECT sum(late_rows) AS n FROM stream_progress WHERE query_name = 'hot'"
    return hot.query_arrow(sql).to_pylist()[0]["n"] or 0


def hot_watermark(hot: HotStore) -> datetime | None:
    """The newest watermark a ``hot`` micro-batch recorded: every later micro-batch drops events behind it as late.

    Spark drops late rows against the watermark of the batch before (a batch's ``batchWatermarkMs``, which its
    progress row shows), so the first batch with data after a start drops nothing, and neither does the next one
    when it has data too: Spark runs a batch without data to move the watermark on only when no data is waiting."""
    sql = "SELECT max(watermark) AS w FROM stream_progress WHERE query_name = 'hot' AND watermark > 0"
    value = hot.query_arrow(sql).to_pylist()[0]["w"]
    return None if value is None else (value if value.tzinfo else value.replace(tzinfo=UTC))


def stream_caught_up(hot: HotStore, settings: Settings, queries: tuple[str, ...] = ("hot",)) -> bool:
    """Each of the stream's ``queries`` committed a micro-batch reaching the topic's end offsets of this moment (read
    here, from Kafka): every record written before the call is counted or was found a duplicate. Waiting for this
    is what a test means by "a duplicate, had it been counted, would show by now", without guessing a time."""
    ends = topic_end_offsets(settings.kafka_bootstrap, settings.kafka_topic)
    rows = hot.query_arrow("SELECT query_name, end_offsets FROM stream_progress "
                           "ORDER BY finished_at DESC LIMIT 50").to_pylist()
    return all(any(not offsets_behind(parse_offsets(r["end_offsets"]), ends) for r in rows if r["query_name"] == q)
               for q in queries)


def assert_minutes_match(actual: dict[datetime, dict[str, Any]], expected: dict[datetime, dict[str, Any]]) -> None:
    """``expected`` as ``demo.ground_truth.per_minute`` builds it (users as a set of ids)."""
    assert set(actual) == set(expected)
    for minute, want in expected.items():
        got = actual[minute]
        assert got["events"] == want["events"], minute
        assert got["revenue"] == pytest.approx(want["revenue"], abs=1e-6), minute
        assert abs(got["users"] - len(want["users"])) <= max(1, 0.02 * len(want["users"])), minute
