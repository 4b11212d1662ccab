"""The funnel walk written in SQL (``serving.analytics.funnel_sql``) equals the truth exactly.

Every case it covers, in either engine (ordered and strict modes, users and sessions, step filters, a step
repeating an earlier event, a breakdown, short and long windows) over the hand-made and random clickstream of
``tests/analytics_clickstream.py`` in the in-process hot tier and the temporary lake, compared with
``tests/analytics_truth.py``: counts, times to convert, breakdown rows and who dropped off.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import tests.analytics_truth as truth
from common.hot_store import HotStore
from common.settings import Settings
from serving.analytics import definitions as defs
from serving.analytics.engine import AnalyticsEngine
from serving.analytics.funnel_sql import walks_in_sql
from tests.analytics_clickstream import FUNNEL, clickstream, lay_hot, lay_lake

TENANT = "walk-co"
CASES: list[dict[str, Any]] = [
    {"steps": FUNNEL, "window": timedelta(days=1)},
    {"steps": FUNNEL, "window": timedelta(hours=1), "mode": "strict"},
    {"steps": FUNNEL, "window": timedelta(days=2), "unit": "sessions", "breakdown": "country"},
    {"steps": [{"event": "page_view"}, {"event": "page_view"}, {"event": "purchase"}], "window": timedelta(hours=6),
     "breakdown": "page"},
    {"steps": [{"event": "page_view", "filters": [{"field": "device", "op": "!=", "value": "ios"}]},
               {"event": "add_to_cart", "filters": [{"field": "page", "op": "in", "values": ["/product", "/cart"]}]},
               {"event": "purchase"}], "window": timedelta(days=3), "breakdown": "device", "breakdown_limit": 1},
    {"steps": [{"event": "add_to_cart"}, {"event": "checkout"}], "window": timedelta(minutes=5), "mode": "strict",
     "unit": "sessions"},
    {"steps": [{"event": "page_view"}, {"event": "purchase"}], "window": timedelta(hours=2)},
    {"steps": [{"event": "page_view"}, {"event": "page_view"}, {"event": "add_to_cart"}, {"event": "page_view"},
               {"event": "checkout"}, {"event": "purchase"}], "window": timedelta(days=1), "breakdown": "country"},
    {"steps": [{"event": "page_view"}, {"event": "page_view"}, {"event": "page_view"}], "window": timedelta(hours=1),
     "mode": "strict"},
]


@pytest.fixture(scope="module")
def laid(settings: Settings, hot: HotStore) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    recent = clickstream(TENANT, "w", now - timedelta(days=6), 5, seed=23).events
    old = clickstream(TENANT, "o", now - timedelta(days=200), 30, seed=24).events
    lay_hot(hot, recent)
    lay_lake(settings, old, TENANT)
    return {"now": now, "hot": (recent, (now - timedelta(days=5), now - timedelta(days=2))),
            "lake": (old, (now - timedelta(days=199), now - timedelta(days=175)))}


def _steps(rows: list[dict[str, Any]]) -> list[tuple]:
    return [(r["count"], r["time_to_convert_mean"], r["time_to_convert_median"]) for r in rows]


@pytest.mark.parametrize("tier", ["hot", "lake"])
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_sql_walk_equals_the_truth(settings: Settings, hot: HotStore, laid: dict[str, Any], case: dict[str, Any],
                                   tier: str):
    events, (start, end) = laid[tier]
    spec = defs.funnel_spec({**case, "tier": tier}, start, end)
    assert walks_in_sql(spec)
    answer = AnalyticsEngine(hot, settings).funnel(TENANT, spec, laid["now"])
    options = {k: case[k] for k in ("window", "mode", "unit") if k in case}
    expected = truth.funnel(events, case["steps"], start, end, breakdown=case.get("breakdown"),
                            breakdown_limit=case.get("breakdown_limit", 10), **options)
    assert expected["steps"][0]["count"] > 0
    assert _steps(answer.body["steps"]) == _steps(expected["steps"])
    if case.get("breakdown"):
        assert {r["value"]: _steps(r["steps"]) for r in answer.body["breakdown"]} == {
            v: _steps(rows) for v, rows in expected["breakdown"].items()}
    for k in range(1, len(case["steps"])):
        assert sorted({c.user_id for c in answer.conversions if c.level == k}) == expected["dropped"][k]
