"""The funnel walk written in SQL (``serving.analytics.funnel_sql``) equals the truth exactly.

Every case it covers, in either engine (ordered and strict modes, users and sessions, step filters, a step
repeating an earlier event, a breakdown, short and long windows) over the hand-made and random clickstream of
``tests/analytics_clickstream.py`` in the in-process hot tier and the temporary lake, compared with
``tests/analytics_truth.py``: counts, times to convert, breakdown rows and who dropped off. The hot tier
three times: the packed walk comparing packed events (units with ties on time walked again, listed or all of
them), the same walk over an array of times cut out of them (the walk before), and the walk that sorts every
unit by event id.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

import tests.analytics_truth as truth
from common import session_pieces
from common.hot_store import HotStore
from common.settings import Settings
from serving.analytics import definitions as defs
from serving.analytics import engine as analytics_engine
from serving.analytics.engine import AnalyticsEngine
from serving.analytics.funnel_sql import packs, walks_in_sql
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
def laid(settings: Settings, hot: HotStore) -> Iterator[dict[str, Any]]:
    """The hot tier's hours before a boundary in the middle of the funnels' range are built into pieces (as the
    batch layer's restatement builds them), the later ones stay raw: units cross from pieces to raw events."""
    now = datetime.now(UTC).replace(microsecond=0)
    recent = clickstream(TENANT, "w", now - timedelta(days=6), 5, seed=23).events
    old = clickstream(TENANT, "o", now - timedelta(days=200), 30, seed=24).events
    lay_hot(hot, recent)
    lay_lake(settings, old, TENANT)
    boundary = (now - timedelta(days=3, hours=12)).replace(minute=0, second=0)
    built = sorted({e["timestamp"].replace(minute=0, second=0, microsecond=0) for e in recent
                    if e["timestamp"] < boundary})
    for hour in built:
        session_pieces.build(hot, hour, 30)
    yield {"now": now, "hot": (recent, (now - timedelta(days=5), now - timedelta(days=2))), "built": built,
           "lake": (old, (now - timedelta(days=199), now - timedelta(days=175)))}
    for table in ("session_pieces", "funnel_pieces", "session_piece_hours"):  # other modules share the hot tier
        hot.command(f"TRUNCATE TABLE {table}")                                  # and lay events into these hours


class Recording:
    """The hot store, keeping the SQL it ran (to see which path answered)."""

    def __init__(self, store: HotStore) -> None:
        self.store, self.sql = store, []

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        self.sql.append(sql)
        return self.store.query_arrow(sql, parameters)


def _steps(rows: list[dict[str, Any]]) -> list[tuple]:
    return [(r["count"], r["time_to_convert_mean"], r["time_to_convert_median"]) for r in rows]


def _check(answer: Any, events: list[dict[str, Any]], case: dict[str, Any], start: datetime, end: datetime) -> None:
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


@pytest.mark.parametrize(("tier", "packed", "on_packed", "pieces", "units"),
                         [("hot", True, True, True, True), ("hot", True, True, True, False),
                          ("hot", True, True, False, True), ("hot", True, True, False, False),
                          ("hot", True, False, True, True), ("hot", True, False, False, False),
                          ("hot", False, True, True, True), ("lake", False, True, True, True)],
                         ids=["hot-packed-pieces", "hot-packed-pieces-no-ids", "hot-packed-raw",
                              "hot-packed-raw-no-ids", "hot-packed-times-pieces", "hot-packed-times-raw-no-ids",
                              "hot-sorted", "lake"])
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_sql_walk_equals_the_truth(settings: Settings, hot: HotStore, laid: dict[str, Any], case: dict[str, Any],
                                   tier: str, packed: bool, on_packed: bool, pieces: bool, units: bool):
    """Without ``units`` (as ``POST /v1/funnels`` asks) the drop-off list comes from a second walk on first use.
    ``on_packed``: the packed walk compares the packed events themselves (the default), or an array of times.
    ``pieces``: by user, the built hours' funnel pieces stand in for their raw events (the default), or not."""
    events, (start, end) = laid[tier]
    spec = defs.funnel_spec({**case, "tier": tier}, start, end)
    assert walks_in_sql(spec) and packs(spec)
    recording = Recording(hot)
    answer = AnalyticsEngine(recording, settings, packed_funnel=packed, funnel_on_packed=on_packed,  # type: ignore[arg-type]
                             use_funnel_pieces=pieces).funnel(TENANT, spec, laid["now"], units=units)
    read_pieces = any("FROM funnel_pieces" in sql for sql in recording.sql)
    assert read_pieces == (tier == "hot" and packed and pieces and spec.unit == "users")
    _check(answer, events, case, start, end)


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_many_tied_units_are_all_walked_again(settings: Settings, hot: HotStore, laid: dict[str, Any],
                                              case: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    """Past the listed users' limit the second pass walks every unit sorting by event id: the same answer."""
    monkeypatch.setattr(analytics_engine, "TIED_USERS_LISTED", 0)
    events, (start, end) = laid["hot"]
    spec = defs.funnel_spec({**case, "tier": "hot"}, start, end)
    _check(AnalyticsEngine(hot, settings).funnel(TENANT, spec, laid["now"]), events, case, start, end)


def _flagged(settings: Settings, hot: HotStore, spec: defs.FunnelSpec, now: datetime) -> tuple[set[str], int]:
    """The users the packed pass sent back (ties on time it cannot order) and how many unit rows it answered."""
    engine = AnalyticsEngine(hot, settings)
    seen: list[Any] = []
    run = engine._run

    def spy(name: str, sql: str, params: dict[str, Any], tables: Any = None) -> Any:
        table = run(name, sql, params, tables)
        if "tied" in table.column_names:
            seen.append(table)
        return table

    engine._run = spy  # type: ignore[method-assign]
    engine.funnel(TENANT, spec, now)
    (packed,) = seen
    rows = packed.to_pylist()
    return {r["user_id"] for r in rows if r["tied"]}, sum(1 for r in rows if not r["tied"])


def test_the_packed_walk_sends_back_only_the_units_whose_ties_it_cannot_order(settings: Settings, hot: HotStore,
                                                                              laid: dict[str, Any]):
    """"tie": add_to_cart and a page view on one millisecond (different steps: the event ids decide). "rep2":
    two page views on one millisecond, the same steps of page view -> page view -> purchase: either order walks
    the same, unless the breakdown's value (the page) is taken from one of them."""
    _, (start, end) = laid["hot"]
    now = laid["now"]
    funnel = defs.funnel_spec({"steps": FUNNEL, "window": timedelta(days=1), "tier": "hot"}, start, end)
    flagged, answered = _flagged(settings, hot, funnel, now)
    assert "wtie" in flagged and answered > len(flagged)  # the random visitors' ties (zero gaps) are sent back too
    repeat = {"steps": [{"event": "page_view"}, {"event": "page_view"}, {"event": "purchase"}],
              "window": timedelta(hours=6), "tier": "hot"}
    flagged, _ = _flagged(settings, hot, defs.funnel_spec(repeat, start, end), now)
    assert "wrep2" not in flagged
    flagged, _ = _flagged(settings, hot, defs.funnel_spec({**repeat, "breakdown": "page"}, start, end), now)
    assert "wrep2" in flagged
