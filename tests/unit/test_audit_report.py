"""Rendering of the compliance report and the `audit` command's input (pure: a hand-made report, no services)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cli.audit_commands import parse_as_of
from cli.audit_report_tables import print_report
from storage_tiers.compliance.audit_report import AuditReport, LogSummary, report_html, report_json
from storage_tiers.compliance.inventory import DAY, HOUR, Inventory, PartitionInfo, TierInventory
from storage_tiers.compliance.violations import find_violations
from storage_tiers.policy import TierPolicy
from tests.unit.test_violations import NOW, TIERS, hour, make_policy, part


@pytest.fixture(scope="module")
def policy() -> TierPolicy:
    return make_policy()


def _report(policy: TierPolicy) -> AuditReport:
    tiers = []
    for dataset, specs in TIERS.items():
        for tier, *_ in specs:
            grain = "day" if tier == "cold" else "hour"
            tiers.append(TierInventory(dataset, tier, f"/lake/{dataset}/{tier}", grain))
    inv = Inventory(NOW, "/lake", tiers)
    inv.get("events", "hot").partitions = [part(hour(h)) for h in (30, 5, 4)]
    inv.get("events", "warm").partitions = [part(hour(h)) for h in (5, 4)]
    old = NOW.replace(hour=0, minute=0) - timedelta(days=2600)
    inv.get("rollups_daily", "cold").partitions = [part(old, DAY, rows=3)]
    inv.get("rollups_hourly", "hot").error = "the hot node is not reachable <test>"
    records = [{"seq": 1, "at": "2026-11-20T01:30:00Z", "action": "purge", "dataset": "events",
                "partition": "dt=2019-01-01", "tier_from": "cold", "rows": 9, "run_id": "r1",
                "reason": "past retention"}]
    findings = find_violations(inv, policy, now=NOW, audit_records=records)
    log = LogSummary("/lake/audit/log", True, 1, [], {"seq": 1, "hash": "ab" * 32}, records)
    return AuditReport(NOW, NOW, inv, policy, findings, log)


def test_json_has_the_outlined_sections(policy: TierPolicy) -> None:
    document = json.loads(json.dumps(report_json(_report(policy))))
    assert set(document) == {"format", "generated_at", "as_of", "lake_uri", "compliant", "policy", "inventory",
                             "violations", "held", "audit_log"}
    events_hot = next(i for i in document["inventory"] if (i["dataset"], i["tier"]) == ("events", "hot"))
    assert (events_hot["partitions"], events_hot["rows"], events_hot["horizon_days"]) == (3, 30, 7)
    assert events_hot["oldest_partition"] == f"dt={hour(30):%Y-%m-%d}/hour={hour(30):%H}"
    assert len(events_hot["partition_list"]) == 3
    counts = document["violations"]["counts"]
    assert counts["past_retention"] == 1 and counts["hot_without_warm"] == 1 and counts["inventory_incomplete"] == 1
    assert document["audit_log"]["counts"] == {"purge": 1} and document["compliant"] is False


def test_html_is_self_contained_and_escaped(policy: TierPolicy) -> None:
    page = report_html(_report(policy))
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 2
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert "&lt;test&gt;" in page and "<test>" not in page  # error texts are escaped
    assert "NOT COMPLIANT" in page and "past retention" in page


def test_terminal_report(policy: TierPolicy, capsys: pytest.CaptureFixture[str]) -> None:
    print_report(_report(policy))
    out = capsys.readouterr().out
    assert "Inventory" in out and "rollups_daily" in out and "NOT COMPLIANT" in out
    assert "verified: chain and anchor intact" in out


def test_as_of() -> None:
    assert parse_as_of("2027-01-01") == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_as_of("2027-01-01T06:30") == datetime(2027, 1, 1, 6, 30, tzinfo=UTC)
    assert parse_as_of("2027-01-01T06:30+02:00") == datetime(2027, 1, 1, 4, 30, tzinfo=UTC)
    assert parse_as_of(None) is None
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_as_of("next tuesday")


def test_partition_info_key() -> None:
    p = PartitionInfo(datetime(2026, 11, 23, 10, tzinfo=UTC), datetime(2026, 11, 23, 11, tzinfo=UTC), 1, 1, 1)
    assert p.key == "dt=2026-11-23/hour=10"
    assert PartitionInfo(p.start.replace(hour=0), p.start.replace(hour=0) + DAY, 1, 1, 1).key == "dt=2026-11-23"
    assert HOUR < DAY
