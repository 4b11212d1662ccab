"""The lake engine (DuckDB over archive Parquet in a temporary folder) equals the plain-Python truth, and
the request checks refuse what the definitions do not allow. No service is started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import tests.analytics_truth as truth
from common.settings import Settings
from serving.analytics import definitions as defs
from serving.analytics.engine import AnalyticsEngine
from serving.query.spec import QueryError
from tests.analytics_clickstream import FUNNEL, REPEAT, clickstream, lay_lake

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
START, END = datetime(2026, 5, 2, tzinfo=UTC), datetime(2026, 5, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[AnalyticsEngine, list[dict]]:
    settings = Settings(home=tmp_path_factory.mktemp("analytics-home"))
    events = clickstream("acme", "u", datetime(2026, 5, 1, tzinfo=UTC), 25, seed=5).events
    lay_lake(settings, events, "acme")
    lay_lake(settings, clickstream("other", "u", datetime(2026, 5, 1, tzinfo=UTC), 25, seed=6).events, "other")
    return AnalyticsEngine(None, settings), events


def _steps(rows):
    return [(r["count"], r["time_to_convert_mean"], r["time_to_convert_median"]) for r in rows]


@pytest.mark.parametrize("mode", ["ordered", "strict", "any"])
@pytest.mark.parametrize("unit", ["users", "sessions"])
def test_funnels(lake, mode, unit):
    engine, events = lake
    spec = defs.funnel_spec({"steps": FUNNEL, "mode": mode, "unit": unit, "window": timedelta(hours=6),
                             "breakdown": "country", "breakdown_limit": 2}, START, END)
    got = engine.funnel("acme", spec, NOW)
    expected = truth.funnel(events, FUNNEL, START, END, window=timedelta(hours=6), mode=mode, unit=unit,
                            breakdown="country", breakdown_limit=2)
    assert got.sources == ["lake:events"]  # the range is older than the hot tier's 7 days
    assert _steps(got.body["steps"]) == _steps(expected["steps"])
    assert {g["value"]: _steps(g["steps"]) for g in got.body["breakdown"]} == {
        v: _steps(s) for v, s in expected["breakdown"].items()}
    counts = [r["count"] for r in got.body["steps"]]
    assert counts[0] > 10 and counts == sorted(counts, reverse=True)


def test_repeated_steps_and_exclusions(lake):
    engine, events = lake
    exclusions = [{"event": "remove_from_cart", "from_step": 1, "to_step": 3}]
    spec = defs.funnel_spec({"steps": REPEAT, "exclusions": exclusions}, START, END)
    expected = truth.funnel(events, REPEAT, START, END, exclusions=exclusions)
    assert _steps(engine.funnel("acme", spec, NOW).body["steps"]) == _steps(expected["steps"])


@pytest.mark.parametrize("by", [None, "entry_page"])
def test_sessions(lake, by):
    engine, events = lake
    got = engine.sessions("acme", defs.sessions_spec({"by": by, "non_interactive": ["scroll"]}, START, END), NOW)
    expected = truth.session_metrics(events, START, END, non_interactive=frozenset({"scroll"}), by=by)
    keys = ("sessions", "avg_session_duration", "pages_per_session", "bounce_rate")
    if by is None:
        assert {k: got.body["totals"][k] for k in keys} == expected[None]
    else:
        assert {r[by]: {k: r[k] for k in keys} for r in got.body["rows"]} == expected


@pytest.mark.parametrize("mode", ["on", "on_or_after"])
def test_retention(lake, mode):
    engine, events = lake
    question = {"start_event": "page_view", "return_event": "purchase", "period": "week", "periods": 3,
                "mode": mode, "breakdown": "device"}
    got = engine.retention("acme", defs.retention_spec(question, START, END), NOW)
    expected = truth.retention(events, START, END, **question)
    assert {(c["cohort"], c["value"]): c["counts"] for c in got.body["cohorts"]} == {
        (k[0].date().isoformat(), k[1]): v for k, v in expected.items()}


def test_paths(lake):
    engine, events = lake
    got = engine.paths("acme", defs.paths_spec({"start_event": "add_to_cart", "steps": 4}, START, END), NOW)
    assert {(e["step"], e["from"], e["to"]): e["sessions"] for e in got.body["edges"]} == truth.paths(
        events, START, END, start_event="add_to_cart", steps=4)


def test_routing_keeps_a_question_on_one_engine():
    engine = AnalyticsEngine(None, Settings())
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert engine.engine_for("auto", now - timedelta(days=6), now) == "hot"
    assert engine.engine_for("auto", now - timedelta(days=6, hours=23, minutes=30), now) == "lake"
    assert engine.engine_for("hot", now - timedelta(days=300), now) == "hot"
    assert engine.engine_for("lake", now, now) == "lake"


@pytest.mark.parametrize(("raw", "says"), [
    ({"steps": FUNNEL[:1]}, "2 to 10 steps"),
    ({"steps": FUNNEL * 3}, "2 to 10 steps"),
    ({"steps": FUNNEL, "mode": "loose"}, "unknown mode"),
    ({"steps": FUNNEL, "unit": "accounts"}, "unknown unit"),
    ({"steps": FUNNEL, "breakdown": "user_id"}, "breakdown dimension"),
    ({"steps": [{"event": "a b"}, {"event": "c"}]}, "event name"),
    ({"steps": [{"event": "a", "filters": [{"field": "tenant", "value": "x"}]}, {"event": "c"}]}, "filter field"),
    ({"steps": FUNNEL, "exclusions": [{"event": "x", "from_step": 2, "to_step": 2}]}, "from_step < to_step"),
    ({"steps": FUNNEL, "window": timedelta(days=400)}, "window"),
])
def test_bad_funnels_are_refused_with_what_to_send(raw, says):
    with pytest.raises(QueryError, match=says):
        defs.funnel_spec(raw, START, END)
