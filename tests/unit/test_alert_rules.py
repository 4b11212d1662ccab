"""Alert rules: validation, the settled window, judging a threshold or a change, and the incident state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from serving.alerts.rules import (
    FIRED,
    FIRING,
    OK,
    RESOLVED,
    AlertError,
    Rule,
    evaluation_end,
    judge,
    notification,
    parse_condition,
    parse_window,
    transition,
    validate_rule,
    windows,
)
from serving.alerts.webhook import Attempt

NOW = datetime(2026, 11, 23, 13, 20, 17, tzinfo=UTC)


def rule(**overrides: object) -> Rule:
    fields = {"id": "r1", "tenant": "acme", "name": " drop ", "metric": "page_views",
              "filters": [{"field": "country", "op": "=", "value": "US"}], "window_minutes": 5,
              "condition": parse_condition({"type": "change", "direction": "drop", "percent": 20}),
              "webhook_url": "https://hooks.example.com/hook"}
    return Rule(**(fields | overrides))  # type: ignore[arg-type]


def test_windows_end_at_the_last_settled_minute() -> None:
    assert evaluation_end(NOW, 10) == datetime(2026, 11, 23, 13, 20, tzinfo=UTC)
    assert evaluation_end(NOW, 30) == datetime(2026, 11, 23, 13, 19, tzinfo=UTC)  # 13:19:47 → 13:19
    current, previous = windows(rule(), evaluation_end(NOW, 30))
    assert (current.start, current.end) == (datetime(2026, 11, 23, 13, 14, tzinfo=UTC),
                                            datetime(2026, 11, 23, 13, 19, tzinfo=UTC))
    assert previous is not None and (previous.start, previous.end) == (current.start - timedelta(minutes=5),
                                                                       current.start)
    threshold = rule(condition=parse_condition({"type": "threshold", "op": "<", "value": 3}))
    assert windows(threshold, evaluation_end(NOW, 30))[1] is None


def test_a_rule_is_validated_like_a_query() -> None:
    checked = validate_rule(rule(), NOW)
    assert checked.name == "drop"
    assert checked.filters == [{"field": "country", "op": "=", "values": ["US"]}]
    with pytest.raises(AlertError, match="unknown metric 'visits'"):
        validate_rule(rule(metric="visits"), NOW)
    with pytest.raises(AlertError, match="unknown filter field 'city'"):
        validate_rule(rule(filters=[{"field": "city", "value": "Paris"}]), NOW)
    for url in ("ftp://x", "http://", "http://a b/", "file:///etc/passwd"):
        with pytest.raises(AlertError, match="webhook_url"):
            validate_rule(rule(webhook_url=url), NOW)
    with pytest.raises(AlertError, match="not like 5m"):
        parse_window("90s")
    with pytest.raises(AlertError, match="whole minutes"):
        parse_window("2d")
    assert parse_window("1h") == 60
    with pytest.raises(AlertError, match="direction"):
        parse_condition({"type": "change", "direction": "down", "percent": 20})
    with pytest.raises(AlertError, match="at most 100"):
        parse_condition({"type": "change", "direction": "drop", "percent": 120})
    with pytest.raises(AlertError, match="condition.type"):
        parse_condition({"type": "forecast"})


@pytest.mark.parametrize(("value", "baseline", "breached"), [
    (100, 100, False), (81, 100, False), (79, 100, True), (0, 100, True),
    (5, 0, False),  # nothing to drop from: not a drop
    (0, 0, None),  # both windows empty: no verdict, the state is kept
])
def test_a_drop_is_judged_against_the_previous_window(value: float, baseline: float, breached: bool | None) -> None:
    condition = parse_condition({"type": "change", "direction": "drop", "percent": 20})
    assert judge(condition, value, baseline).breached is breached


def test_a_rise_and_a_threshold() -> None:
    rise = parse_condition({"type": "change", "direction": "rise", "percent": 50})
    assert judge(rise, 151, 100).breached and not judge(rise, 150, 100).breached
    assert judge(rise, 1, 0).breached  # from nothing to something is an infinite rise
    below = parse_condition({"type": "threshold", "op": "<", "value": 10})
    assert judge(below, 0).breached and not judge(below, 10).breached


def test_one_notification_per_state_change() -> None:
    breached, fine, unknown = judge(parse_condition({"type": "threshold", "op": ">", "value": 1}), 5), \
        judge(parse_condition({"type": "threshold", "op": ">", "value": 1}), 0), \
        judge(parse_condition({"type": "change", "direction": "drop", "percent": 1}), 0, 0)
    assert transition(OK, breached) == FIRED
    assert transition(FIRING, breached) is None  # still firing: no second message
    assert transition(FIRING, unknown) is None
    assert transition(FIRING, fine) == RESOLVED
    assert transition(OK, fine) is None


def test_the_notification_is_slack_compatible_and_machine_readable() -> None:
    checked = validate_rule(rule(), NOW)
    verdict = judge(checked.condition, 40, 100)
    current, _ = windows(checked, evaluation_end(NOW, 30))
    message = notification(checked, FIRED, "inc1", verdict, current, NOW)
    assert message["text"].startswith("[FIRING] drop: page_views = 40 (previous window 100, -60.0 %)")
    assert message["attachments"][0]["color"] == "danger"
    assert message["id"] == "inc1:firing"
    assert message["alert"] | {} == message["alert"] and message["alert"]["status"] == "firing"
    assert (message["alert"]["value"], message["alert"]["baseline"]) == (40, 100)
    assert message["alert"]["window_end"] == "2026-11-23T13:19:00Z"


def test_which_failed_deliveries_are_retried() -> None:
    assert Attempt(1, 204).delivered and not Attempt(1, 500).delivered
    assert not Attempt(1, None, "ConnectTimeout").permanent_failure  # no answer: try again next tick
    assert not Attempt(1, 503).permanent_failure and not Attempt(1, 429).permanent_failure
    assert Attempt(1, 404).permanent_failure and Attempt(1, 400).permanent_failure
    assert Attempt(1, None, "InvalidURL", unusable_url=True).permanent_failure


def test_an_anomaly_fires_beyond_k_standard_deviations_of_the_same_time_in_previous_weeks() -> None:
    import statistics

    from serving.alerts.rules import judge_anomaly, rule_end, seasonal_windows

    condition = parse_condition({"type": "anomaly", "k": 3, "weeks": 4})
    assert condition.direction == "both" and condition.as_dict() == {"type": "anomaly", "direction": "both", "k": 3.0,
                                                                      "weeks": 4}
    weeks = [100.0, 110.0, 90.0, 100.0]
    mean, sd = statistics.fmean(weeks), statistics.stdev(weeks)  # 100, 8.16
    assert judge_anomaly(condition, 100 + 2.9 * sd, weeks).breached is False
    fired = judge_anomaly(condition, 100 - 3.1 * sd, weeks)
    assert fired.breached is True and fired.baseline == mean and fired.stddev == pytest.approx(sd)
    assert fired.sigmas == pytest.approx(-3.1) and fired.baselines == tuple(weeks)
    assert "baseline 100 ± 8.165 from the previous weeks: 100, 110, 90, 100, -3.10 σ" in fired.summary("x")
    rises_only = parse_condition({"type": "anomaly", "k": 3, "weeks": 4, "direction": "rise"})
    assert judge_anomaly(rises_only, 100 - 5 * sd, weeks).breached is False
    assert judge_anomaly(rises_only, 100 + 5 * sd, weeks).breached is True
    # a flat baseline: any move in the direction is an anomaly, none is not
    assert judge_anomaly(condition, 51, [50, 50, 50]).breached is True
    assert judge_anomaly(condition, 50, [50, 50, 50]).breached is False
    # fewer than two weeks with a value (a KPI undefined), or no value now: nothing to judge, the state is kept
    assert judge_anomaly(condition, 10, [None, None, 50]).breached is None
    assert judge_anomaly(condition, None, weeks).breached is None
    anomaly_rule = rule(window_minutes=120, condition=condition)
    end = rule_end(anomaly_rule, NOW, 30)
    assert end == datetime(2026, 11, 23, 13, tzinfo=UTC)  # whole hours, the last settled one
    current, _ = windows(anomaly_rule, end)
    assert [(w.start, w.end) for w in seasonal_windows(anomaly_rule, current)][:2] == [
        (datetime(2026, 11, 16, 11, tzinfo=UTC), datetime(2026, 11, 16, 13, tzinfo=UTC)),
        (datetime(2026, 11, 9, 11, tzinfo=UTC), datetime(2026, 11, 9, 13, tzinfo=UTC))]


def test_an_anomaly_rule_is_checked_for_whole_hours_and_its_weeks() -> None:
    with pytest.raises(AlertError, match="weeks"):
        parse_condition({"type": "anomaly", "k": 3, "weeks": 9})
    with pytest.raises(AlertError, match="k"):
        parse_condition({"type": "anomaly", "k": 0})
    anomaly = parse_condition({"type": "anomaly"})
    assert (anomaly.k, anomaly.weeks) == (3.0, 4)
    with pytest.raises(AlertError, match="whole hours"):
        validate_rule(rule(window_minutes=5, condition=anomaly), NOW)
    assert validate_rule(rule(window_minutes=60, condition=anomaly), NOW).window_minutes == 60


def test_a_rule_may_watch_a_kpi_of_its_tenant() -> None:
    from serving.query.kpi import Kpi
    from serving.query.spec import METRICS

    kpi = Kpi.of("revenue_per_purchase", "revenue / purchases", METRICS)
    with pytest.raises(AlertError, match="unknown metric 'revenue_per_purchase'"):
        validate_rule(rule(metric="revenue_per_purchase"), NOW)
    assert validate_rule(rule(metric="revenue_per_purchase"), NOW, kpis={kpi.name: kpi}).metric == kpi.name
    assert judge(parse_condition({"type": "threshold", "op": "<", "value": 1}), None).breached is None
