"""The audit log's hash chain on a local lake: appends, concurrent writers, and every kind of tampering named."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from common.settings import Settings
from storage_tiers.compliance.audit_log import GENESIS, AuditError, AuditLog, canonical, record_hash
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
    assert all(r["hash"] == log.hash_of(r) for r in records)
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
    _edit(_file(log, 2), lambda r: r.update(rows=999, hash=log.hash_of({**r, "rows": 999})))
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


def _rewrite_history(log: AuditLog, from_seq: int, hash_of) -> None:
    """Edit record ``from_seq``, recompute every later hash and link with ``hash_of``, rewrite head.json:
    everything someone with write access to the lake can do."""
    records = log.records()
    prev = records[from_seq - 2]["hash"] if from_seq > 1 else GENESIS
    for record in records[from_seq - 1:]:
        if record["seq"] == from_seq:
            record["rows"] = 0
        record["prev_hash"] = prev
        record["hash"] = hash_of(record)
        prev = record["hash"]
        path = _file(log, record["seq"])
        os.chmod(path, 0o644)
        path.write_bytes(canonical(record) + b"\n")
    head = Path(log.location).parent / "head.json"
    head.write_bytes(canonical({"seq": records[-1]["seq"], "hash": prev}) + b"\n")


def test_a_rewritten_history_without_the_key_is_named_at_its_first_altered_record(log: AuditLog) -> None:
    import hashlib

    _fill(log, 6)
    _rewrite_history(log, 3, lambda r: hashlib.sha256(canonical({k: v for k, v in r.items() if k != "hash"}))
                     .hexdigest())  # the old unkeyed scheme: all an attacker without the key can compute
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 3
    assert any(p.startswith("record 000000000003: hash mismatch") for p in result.problems)


def test_a_rewritten_history_with_the_key_is_caught_by_the_anchor_store(log: AuditLog) -> None:
    _fill(log, 6)
    _rewrite_history(log, 3, log.hash_of)  # even a leaked key: the chain and head.json are consistent again
    chain_only = [p for p in log.verify().problems if "anchored" not in p]
    assert chain_only == []  # the hash chain alone can no longer tell
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 3
    assert any(p.startswith("record 000000000003: differs from the hash anchored") for p in result.problems)


def test_the_key_and_the_anchors_live_outside_the_lake(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, lake_uri="")
    log = AuditLog(settings)
    log.append("move", "events", partition="dt=2020-01-01")
    key_file = tmp_path / "secrets" / "audit-hmac.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    lake = Path(settings.effective_lake_uri)
    assert not str(log.anchor_location).startswith(str(lake)) and not str(key_file).startswith(str(lake))
    assert (Path(log.anchor_location) / "000000000001.json").exists()
    record = log.records()[0]
    assert record["hash"] == record_hash(record, key_file.read_text().encode())
    other = AuditLog(Settings(home=tmp_path, lake_uri="", audit_hmac_key="a-different-key"))
    assert not other.verify().ok  # a verifier with another key accepts nothing
