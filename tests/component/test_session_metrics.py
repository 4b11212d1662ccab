"""Session metrics of either engine equal the truth exactly, totals and per entry or exit page.

The hot tier cuts sessions from per-user arrays (``session_metrics`` in the ClickHouse SQL), the lake with
window functions; the hand-made cases of ``tests/analytics_clickstream.py`` (client session ids, a gap of
exactly 30 minutes, a session crossing midnight, one cut at 24 hours) and its random visitors check both
against ``tests/analytics_truth.py``.
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
from tests.analytics_clickstream import clickstream, lay_hot, lay_lake

TENANT = "sessions-co"
KEYS = ("sessions", "avg_session_duration", "pages_per_session", "bounce_rate")


@pytest.fixture(scope="module")
def laid(settings: Settings, hot: HotStore) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    recent = clickstream(TENANT, "s", now - timedelta(days=6), 5, seed=31).events
    old = clickstream(TENANT, "t", now - timedelta(days=200), 30, seed=32).events
    lay_hot(hot, recent)
    lay_lake(settings, old, TENANT)
    return {"now": now, "hot": (recent, (now - timedelta(days=5), now - timedelta(days=2))),
            "lake": (old, (now - timedelta(days=199), now - timedelta(days=175)))}


@pytest.mark.parametrize("tier", ["hot", "lake"])
@pytest.mark.parametrize("by", [None, "entry_page", "exit_page"])
def test_session_metrics_equal_the_truth(settings: Settings, hot: HotStore, laid: dict[str, Any], tier: str,
                                         by: str | None):
    events, (start, end) = laid[tier]
    spec = defs.sessions_spec({"tier": tier, "by": by, "non_interactive": ["scroll"]}, start, end)
    body = AnalyticsEngine(hot, settings).sessions(TENANT, spec, laid["now"]).body
    expected = truth.session_metrics(events, start, end, non_interactive=frozenset({"scroll"}), by=by)
    assert sum(m["sessions"] for m in expected.values()) > 50
    if by is None:
        assert {k: body["totals"][k] for k in KEYS} == {k: expected[None][k] for k in KEYS}
    else:
        assert {r[by]: {k: r[k] for k in KEYS} for r in body["rows"]} == {
            g: {k: m[k] for k in KEYS} for g, m in expected.items()}
