"""Legal holds: a tenant's data over a date range that the purge must keep, whatever its retention.

Holds are not kept in a separate state file: they are derived from the audit log's ``hold_placed``
and ``hold_released`` records, so placing or releasing one is itself tamper-evident and the purge
reads exactly what the audit shows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from storage_tiers.compliance.audit_log import AuditError, AuditLog


class HoldError(ValueError):
    """A hold command was given bad input; the message says what to do."""


@dataclass(frozen=True)
class LegalHold:
    hold_id: str
    tenant: str
    start: date  # first day held (UTC), inclusive
    end: date  # last day held, inclusive
    reason: str
    placed_at: str
    placed_by: str

    def covers(self, tenant: str, day: date) -> bool:
        return tenant == self.tenant and self.start <= day <= self.end


def _day(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise HoldError(f"{what} {text!r} is not a date; use YYYY-MM-DD") from exc


def place_hold(log: AuditLog, tenant: str, start: str, end: str, reason: str, placed_by: str = "",
               run_id: str | None = None) -> LegalHold:
    """Record a hold on ``tenant``'s data from ``start`` to ``end`` (inclusive UTC days)."""
    first, last = _day(start, "--from"), _day(end, "--to")
    if last < first:
        raise HoldError(f"--to {end} is before --from {start}")
    if not tenant:
        raise HoldError("a hold needs a tenant (--tenant)")
    if not reason.strip():
        raise HoldError("a hold needs a reason (--reason), e.g. a case or ticket number")
    hold_id = f"hold-{uuid.uuid4().hex[:12]}"
    record = log.append(
        "hold_placed", "*", partition=f"tenant={tenant}/dt={first}..{last}", run_id=run_id, reason=reason,
        details={"hold_id": hold_id, "tenant": tenant, "start": first.isoformat(), "end": last.isoformat(),
                 "placed_by": placed_by},
    )
    return LegalHold(hold_id, tenant, first, last, reason, record["at"], placed_by)


def release_hold(log: AuditLog, hold_id: str, reason: str = "", released_by: str = "",
                 run_id: str | None = None) -> LegalHold:
    """Record the release of an active hold; its data becomes purgeable again at the next purge."""
    active = {h.hold_id: h for h in active_holds(log)}
    hold = active.get(hold_id)
    if hold is None:
        raise HoldError(f"no active hold {hold_id!r}; `lakehouse hold list` shows the active ones")
    log.append("hold_released", "*", partition=f"tenant={hold.tenant}/dt={hold.start}..{hold.end}", run_id=run_id,
               reason=reason, details={"hold_id": hold_id, "released_by": released_by})
    return hold


def active_holds(log: AuditLog) -> list[LegalHold]:
    """Holds placed and not released, in the order they were placed.

    Every record must be readable: a record that does not parse, or a hold record without a usable tenant,
    id or dates, raises ``HoldError`` instead of being skipped, since the skipped record could be the hold
    that keeps data from the purge."""
    holds: dict[str, LegalHold] = {}
    try:
        records = log.records(strict=True)
    except AuditError as exc:
        raise HoldError(f"cannot read every legal hold: {exc}") from exc
    for record in records:
        action = record.get("action") if isinstance(record, dict) else None
        if action not in ("hold_placed", "hold_released"):
            continue
        details = record.get("details") or {}
        try:
            if action == "hold_placed":
                holds[str(details["hold_id"])] = LegalHold(
                    str(details["hold_id"]), str(details["tenant"]), date.fromisoformat(details["start"]),
                    date.fromisoformat(details["end"]), record.get("reason", ""), record.get("at", ""),
                    details.get("placed_by", ""))
            else:
                holds.pop(str(details["hold_id"]), None)
        except (KeyError, TypeError, ValueError) as exc:
            raise HoldError(f"audit record {record.get('seq')!r} ({action}) is unreadable ({exc!r}); the holds it "
                            "changes cannot be known: run `lakehouse audit verify` and restore the record") from exc
    return list(holds.values())


def is_held(holds: list[LegalHold], tenant: str, day: date) -> bool:
    return any(h.covers(tenant, day) for h in holds)
