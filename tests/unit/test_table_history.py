"""The audit log against the tables' history, on a local lake: the records the tier mover and the purge write match
the commits they made; a record naming a version that is another commit, or other metrics, is reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from cli.audit_commands import _verify
from common.events import EVENT_ARROW_SCHEMA
from common.lake_tables import (
    ARCHIVE_TABLE,
    COLD_EVENTS_TABLE,
    ROLLUPS_HOURLY_SCHEMA,
    ROLLUPS_HOURLY_TABLE,
    open_table,
    replace_partition,
    with_partition_columns,
)
from common.settings import Settings
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.compliance.table_history import verify_tables
from storage_tiers.policy import load_policy
from storage_tiers.tiers.movers import TierMover

DAY = datetime(2024, 5, 2, tzinfo=UTC)


def _lake(tmp_path: Path) -> tuple[Settings, AuditLog]:
    settings = Settings(home=tmp_path / "home", tier_policy="")
    for h in (3, 9):
        hour = DAY + timedelta(hours=h)
        rows = pa.Table.from_pylist([
            {"tenant": "acme", "event": "view", "timestamp": hour + timedelta(seconds=i), "event_id": f"{h}-{i}",
             "user_id": "u", "page": "/", "country": "FR", "device": "web", "revenue": 1.0, "properties": "{}",
             "received_at": hour} for i in range(6)], schema=EVENT_ARROW_SCHEMA)
        replace_partition(settings, ARCHIVE_TABLE, hour, with_partition_columns(rows, ARCHIVE_TABLE, hour), "archive",
                          {"rows": 6})
        rollup = pa.Table.from_pylist([{"tenant": "acme", "event": "view", "country": "FR", "device": "web",
                                        "page": "/", "hour": hour, "events": 6, "revenue": 6.0, "user_ids": ["u"]}],
                                      schema=ROLLUPS_HOURLY_SCHEMA)
        replace_partition(settings, ROLLUPS_HOURLY_TABLE, hour, with_partition_columns(rollup, ROLLUPS_HOURLY_TABLE,
                                                                                       hour), "recompute", {})
    audit = AuditLog(settings)
    report = TierMover(settings, load_policy(settings), audit, as_of=datetime(2025, 12, 1, tzinfo=UTC)).warm_to_cold(
        DAY.date())
    assert report.problems == []
    return settings, audit


def test_the_movers_records_match_the_tables_history(tmp_path: Path, capsys) -> None:
    settings, audit = _lake(tmp_path)
    check = verify_tables(settings, audit.records())
    actions = sorted(r["action"] for r in audit.records() if (r.get("details") or {}).get("table_version") is not None)
    # the cold events, the daily rollups and the day sketches built from them; four warm hours moved
    assert actions == ["compact_cold", "compact_cold", "compact_cold", "move", "move", "move", "move"]
    assert check.ok and check.checked == len(actions) and check.unverifiable == 0, check
    assert _verify(settings) == 0
    assert "7 commit record(s) match" in capsys.readouterr().out


def test_a_record_that_is_not_its_tables_commit_is_reported(tmp_path: Path, capsys) -> None:
    settings, audit = _lake(tmp_path)
    cold_version = open_table(settings, COLD_EVENTS_TABLE).version()
    move = next(r for r in audit.records() if r["action"] == "move" and r["dataset"] == "events")
    audit.append("purge", "events", partition="dt=2024-05-02", tier_from="cold", rows=3, reason="test",
                 details={"table": "cold/events", "table_version": cold_version, "deleted_rows": 3})
    audit.append("move", "events", partition=move["partition"], tier_from="warm", tier_to="cold", rows=6,
                 reason="test", details={**move["details"], "deleted_rows": 5})
    audit.append("move", "events", partition="dt=2024-05-02/hour=04", tier_from="warm", tier_to="cold", rows=6,
                 reason="test", details={**move["details"]})
    audit.append("move", "events", partition="x", reason="test", details={"table": "archive/events",
                                                                           "table_version": 999})
    problems = verify_tables(settings, audit.records()).problems
    assert len(problems) == 3, problems
    assert "is a 'cold' commit, not a purge" in problems[0]
    assert "deleted_rows 5 in the record, 6 in archive/events" in problems[1]
    assert "the record says 'dt=2024-05-02/hour=04'" in problems[2]
    assert verify_tables(settings, audit.records()).unverifiable == 1, "version 999 was never written"
    assert _verify(settings) == 1
    assert "not a purge" in capsys.readouterr().out
