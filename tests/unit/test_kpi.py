"""The KPI formula parser: what it accepts, what it refuses, and how it computes (no eval anywhere)."""

from __future__ import annotations

import pytest

from serving.query.kpi import Kpi, KpiError, evaluate, parse

KNOWN = ["revenue", "purchases", "unique_users", "page_views"]


@pytest.mark.parametrize(("formula", "values", "expected"), [
    ("revenue / purchases", {"revenue": 50.0, "purchases": 4}, 12.5),
    ("100 * purchases / unique_users", {"purchases": 3, "unique_users": 12}, 25.0),
    ("(revenue - 10) * 2", {"revenue": 15}, 10.0),
    ("revenue - 10 * 2", {"revenue": 15}, -5.0),  # precedence
    ("10 - 4 - 3", {}, 3.0),  # left associative
    ("-purchases + 1.5", {"purchases": 2}, -0.5),
    ("((page_views))", {"page_views": 7}, 7.0),
    (".5 * 4", {}, 2.0),
])
def test_formulas_compute_like_arithmetic(formula, values, expected):
    assert evaluate(parse(formula, KNOWN), values) == expected


def test_division_by_zero_and_null_operands_give_null():
    kpi = Kpi.of("rpp", "revenue / purchases", KNOWN)
    assert kpi.value({"revenue": 10.0, "purchases": 0}) is None
    assert kpi.value({"revenue": None, "purchases": 2}) is None
    assert Kpi.of("x", "1 + revenue / (purchases - purchases)", KNOWN).value({"revenue": 1, "purchases": 3}) is None
    assert kpi.metrics == ["purchases", "revenue"]


@pytest.mark.parametrize(("formula", "message"), [
    ("", "empty"),
    ("revenue / secret_column", "unknown metric 'secret_column'"),
    ("__import__('os')", "only metric names"),
    ("revenue ** 2", "expected a metric"),
    ("revenue; DROP TABLE events_raw", "unexpected ';'"),
    ("(revenue / purchases", "missing ')'"),
    ("revenue purchases", "unexpected 'purchases'"),
    ("revenue.x", "unexpected"),
    ("1 +", "the end"),
    ("(" * 40 + "1" + ")" * 40, "deeper"),
    ("1+" * 300 + "1", "longer than"),
])
def test_anything_else_is_refused_with_a_pointer(formula, message):
    with pytest.raises(KpiError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(formula, KNOWN)


def test_a_question_may_name_a_kpi_where_a_metric_goes_and_its_formula_is_part_of_the_cache_key() -> None:
    from datetime import UTC, datetime

    from serving.query.kpi_rows import base_spec, with_kpis
    from serving.query.spec import METRICS, QueryError, SpecInput, build_spec, named_values

    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    aov = Kpi.of("aov", "revenue / purchases", METRICS)
    raw = SpecInput(metrics=["aov", "events"], dimensions=["country"], range="1d", limit=2,
                    filters=[{"field": "aov", "op": ">=", "value": 1}], order_by=[{"field": "aov"}])
    assert named_values(raw) == {"aov"}
    with pytest.raises(QueryError, match="unknown metric 'aov'"):
        build_spec(raw, now=now)
    spec = build_spec(raw, now=now, kpis={"aov": aov})
    assert spec.kpis == (aov,) and spec.cache_identity()["kpis"] == [("aov", "revenue / purchases")]
    changed = Kpi.of("aov", "revenue / (purchases + 1)", METRICS)
    assert build_spec(raw, now=now, kpis={"aov": changed}).cache_identity() != spec.cache_identity()
    base = base_spec(spec)  # the catalogue metrics it needs, cut by value after the formula
    assert (base.metrics, base.kpis, base.limit, base.order_by, base.filters) == (
        ("events", "purchases", "revenue"), (), None, (), ())
    rows = [{"country": c, "events": 9, "revenue": r, "purchases": p}
            for c, r, p in (("DE", 10.0, 4), ("FR", 3.0, 0), ("JP", 9.0, 3), ("US", 1.0, 2))]
    assert [(r["country"], r["aov"]) for r in with_kpis(spec, rows)] == [("JP", 3.0), ("DE", 2.5)]
