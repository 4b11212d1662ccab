"""The audit log's hash chain on a local lake: appends, concurrent writers, and every kind of tampering named."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from common.settings import Settings
from storage_tiers.compliance.audit_log import GENESIS, AuditError, AuditLog, record_hash
from storage_tiers.compliance.holds import HoldError, active_holds, is_held, place_hold, release_hold


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    return AuditLog(Settings(home=tmp_path, lake_uri=""))


def _fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append("move", "events", partition=f"dt=2020-01-0{i + 1}", tier_from="warm", tier_to="cold", rows=i,
                   bytes=10 * i, checksum=f"sha256:{i}", run_id="r1")


def _file(log: AuditLog, seq: int) -> Path:
    return Path(log.location) / f"{seq:012d}.json"


def _edit(path: Path, change) -> None:
    os.chmod(path, 0o644)
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def test_records_chain_and_verify(log: AuditLog) -> None:
    _fill(log, 4)
    records = log.records()
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert records[0]["prev_hash"] == GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(records, records[1:], strict=False))
    assert all(r["hash"] == record_hash(r) for r in records)
    result = log.verify()
    assert result.ok and result.records == 4 and result.problems == []
    assert log.head() == {"seq": 4, "hash": records[-1]["hash"]}


def test_an_altered_record_is_named(log: AuditLog) -> None:
    _fill(log, 5)
    _edit(_file(log, 3), lambda r: r.update(rows=999))
    result = log.verify()
    assert not result.ok
    assert any(p.startswith("record 000000000003: hash mismatch") for p in result.problems)


def test_an_altered_record_with_a_recomputed_hash_breaks_the_next_link(log: AuditLog) -> None:
    _fill(log, 5)
    _edit(_file(log, 2), lambda r: r.update(rows=999, hash=record_hash({**r, "rows": 999})))
    result = log.verify()
    assert not result.ok
    assert any(p.startswith("record 000000000003: prev_hash") for p in result.problems)


def test_a_removed_record_is_named(log: AuditLog) -> None:
    _fill(log, 5)
    _file(log, 3).unlink()
    result = log.verify()
    assert any("000000000003 removed" in p for p in result.problems)


def test_removed_newest_records_are_caught_by_the_anchor(log: AuditLog) -> None:
    _fill(log, 5)
    _file(log, 5).unlink()
    result = log.verify()
    assert not result.ok
    assert any("anchor names record 000000000005" in p for p in result.problems)


def test_reordered_records_are_named(log: AuditLog) -> None:
    _fill(log, 5)
    a, b = _file(log, 2), _file(log, 4)
    body_a, body_b = a.read_bytes(), b.read_bytes()
    os.chmod(a, 0o644)
    os.chmod(b, 0o644)
    a.write_bytes(body_b)
    b.write_bytes(body_a)
    problems = log.verify().problems
    assert any(p.startswith("record 000000000002: holds seq 4") for p in problems)
    assert any(p.startswith("record 000000000004: holds seq 2") for p in problems)


def test_concurrent_writers_never_fork_the_chain(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, lake_uri="")

    def writer(name: str) -> None:
        own = AuditLog(settings)  # one object per writer, as separate processes would have
        for i in range(15):
            own.append("purge", "events", partition=f"{name}-{i}", run_id=name)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = AuditLog(settings)
    records = log.records()
    assert [r["seq"] for r in records] == list(range(1, 61))
    assert sorted(r["partition"] for r in records) == sorted(f"w{i}-{j}" for i in range(4) for j in range(15))
    assert log.verify().ok


def test_unknown_action_is_refused(log: AuditLog) -> None:
    with pytest.raises(AuditError, match="accepted"):
        log.append("shred", "events", partition="x")


def test_holds_are_derived_from_the_log(log: AuditLog) -> None:
    from datetime import date

    hold = place_hold(log, "acme", "2020-01-01", "2020-03-31", "case 42")
    other = place_hold(log, "beta", "2021-01-01", "2021-01-01", "case 43")
    assert {h.hold_id for h in active_holds(log)} == {hold.hold_id, other.hold_id}
    holds = active_holds(log)
    assert is_held(holds, "acme", date(2020, 2, 1)) and not is_held(holds, "acme", date(2020, 4, 1))
    assert not is_held(holds, "beta", date(2020, 2, 1))
    release_hold(log, other.hold_id, reason="case closed")
    assert [h.hold_id for h in active_holds(log)] == [hold.hold_id]
    assert [r["action"] for r in log.records()] == ["hold_placed", "hold_placed", "hold_released"]
    with pytest.raises(HoldError, match="no active hold"):
        release_hold(log, other.hold_id)
    with pytest.raises(HoldError, match="before"):
        place_hold(log, "acme", "2020-02-01", "2020-01-01", "x")
    assert log.verify().ok
