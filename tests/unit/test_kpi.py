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
