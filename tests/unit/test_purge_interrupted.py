"""A retention purge stopped between a deletion and its audit record: the next purge leaves the right numbers.

Real cold days (the cold events Delta table) on a temporary local lake, a legal hold that turns one day's purge into a
rewrite, and a purge "killed" right after its first deletion (its first audit append never happens). The truth
is the rows laid per tenant; the audit log must end up counting each purged row exactly once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from common.events import EVENT_ARROW_SCHEMA
from common.lake import purge_runs_path
from common.lake_tables import COLD_EVENTS_TABLE
from common.settings import Settings
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.compliance.holds import place_hold
from storage_tiers.policy import load_policy
from storage_tiers.tiers.cold_files import EVENTS_SORT, publish_day, published
from storage_tiers.tiers.purge import Purger

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
DAYS = [date(2019, 1, 1), date(2019, 1, 2)]  # past the 7-year retention on NOW
LAID = {DAYS[0]: {"acme": 3, "beta": 2}, DAYS[1]: {"beta": 4}}  # acme's day 0 is held: day 0 is rewritten


class Killed(BaseException):
    """The process died here (not an error the purge could handle)."""


def lay(settings: Settings) -> None:
    for day, tenants in LAID.items():
        at = datetime(day.year, day.month, day.day, 5, tzinfo=UTC)
        rows = [{"tenant": t, "event": "click", "timestamp": at.replace(minute=i), "event_id": f"{t}-{i}",
                 "user_id": "u", "received_at": at} for t, n in tenants.items() for i in range(n)]
        publish_day(settings, COLD_EVENTS_TABLE, day, pa.Table.from_pylist(rows, schema=EVENT_ARROW_SCHEMA),
                    EVENTS_SORT, [], {}, None)


def purge(settings: Settings) -> None:
    Purger(settings, load_policy(settings), AuditLog(settings), NOW).run(confirm_large=True, now=NOW)


def purged_rows(settings: Settings) -> dict[str, int]:
    out: dict[str, int] = {}
    for record in AuditLog(settings).records():
        if record["action"] == "purge":
            out[record["partition"]] = out.get(record["partition"], 0) + record["rows"]
    return out


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path, lake_uri="")
    lay(settings)
    place_hold(AuditLog(settings), "acme", DAYS[0].isoformat(), DAYS[0].isoformat(), "case 1", placed_by="test")
    return settings


def test_a_purge_killed_after_a_deletion_is_audited_once_by_the_next_one(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def killed(*_args: object, **_kwargs: object) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(Purger, "_audit", killed)
        with pytest.raises(Killed):
            purge(settings)
    # day 0 lost beta's rows, but the audit does not say so yet; the run's plan is left behind
    assert published(settings, COLD_EVENTS_TABLE, DAYS[0])["tenants"] == {"acme": 3}
    assert purged_rows(settings) == {}
    assert len(list(Path(purge_runs_path(settings)).glob("*.json"))) == 1

    purge(settings)
    assert purged_rows(settings) == {f"dt={DAYS[0]}": 2, f"dt={DAYS[1]}": 4}  # each purged row counted once
    recovered = [r for r in AuditLog(settings).records() if "recovered_from_purge" in r["details"]]
    assert [(r["partition"], r["details"]["tenants"]) for r in recovered] == [(f"dt={DAYS[0]}", ["beta"])]
    assert list(Path(purge_runs_path(settings)).glob("*.json")) == []
    assert AuditLog(settings).verify().ok

    purge(settings)  # nothing left to purge or to recover
    assert purged_rows(settings) == {f"dt={DAYS[0]}": 2, f"dt={DAYS[1]}": 4}


def test_a_purge_killed_before_deleting_anything_is_simply_done_again(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import storage_tiers.tiers.purge as purge_module

    real_delete = purge_module.delete_rows

    def delete_rows(settings: Settings, table: object, *args: object) -> object:
        if table is COLD_EVENTS_TABLE:  # the first write of a deletion: the process dies before it
            raise Killed
        return real_delete(settings, table, *args)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(purge_module, "delete_rows", delete_rows)
        with pytest.raises(Killed):
            purge(settings)
    assert purged_rows(settings) == {} and len(list(Path(purge_runs_path(settings)).glob("*.json"))) == 1
    purge(settings)
    assert purged_rows(settings) == {f"dt={DAYS[0]}": 2, f"dt={DAYS[1]}": 4}
    assert not [r for r in AuditLog(settings).records() if "recovered_from_purge" in (r.get("details") or {})]
