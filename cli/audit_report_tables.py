"""The compliance audit report as terminal tables: what ``lakehouse audit`` prints."""

from __future__ import annotations

from common.terminal import print_table
from storage_tiers.compliance.audit_report import (
    LOG_ENTRIES_SHOWN,
    AuditReport,
    age_text,
    horizon_days,
    short_time,
    size_text,
)


def print_report(report: AuditReport) -> None:
    """Terminal tables on standard output: inventory, violations, holds, audit-log summary and verification."""
    out = print

    out(f"Compliance audit of {report.inventory.lake_uri} as of {short_time(report.as_of)} UTC "
        f"(generated {short_time(report.generated_at)} UTC)")
    out("")
    out("Inventory")
    rows = []
    for t in report.inventory.tiers:
        horizon = horizon_days(report.policy, t.dataset, t.tier)
        rows.append([t.dataset, t.tier, f"{horizon} d" if horizon is not None else "", len(t.partitions), t.rows,
                     size_text(t.bytes), short_time(t.min_event_time), short_time(t.max_event_time),
                     age_text(report, t.min_event_time), t.error or ""])
    print_table(["dataset", "tier", "horizon", "partitions", "rows", "bytes", "oldest event", "newest event",
                 "oldest age", "error"], rows)
    out("")
    counts = report.findings.counts()
    summary = ", ".join(f"{k} {n}" for k, n in counts.items() if n) or "none"
    out(f"Violations: {summary}")
    if report.findings.violations:
        print_table(["kind", "rule", "dataset", "tier", "from", "to", "partitions", "rows", "detail"],
                    [[v.kind, v.code, v.dataset, v.tier or "", short_time(v.start), short_time(v.end), v.partitions,
                      v.rows, v.detail] for v in report.findings.violations])
    if report.findings.held:
        out("")
        out("Kept past retention by legal holds")
        print_table(["dataset", "tier", "from", "to", "partitions", "rows", "holds"],
                    [[h.dataset, h.tier, short_time(h.start), short_time(h.end), h.partitions, h.rows,
                      ", ".join(h.holds)] for h in report.findings.held])
    if report.log.active_holds:
        out("")
        out("Active legal holds")
        print_table(["hold", "tenant", "from", "to", "reason", "placed at", "by"],
                    [[h["hold_id"], h["tenant"], h["start"], h["end"], h["reason"], h["placed_at"], h["placed_by"]]
                     for h in report.log.active_holds])
    out("")
    log = report.log
    actions = ", ".join(f"{a} {n}" for a, n in log.counts().items()) or "no records"
    out(f"Audit log {log.location}: {log.records} record(s) — {actions}")
    out("  verified: chain and anchor intact" if log.ok else "  NOT INTACT:\n" + "\n".join(
        f"    - {p}" for p in log.problems))
    if log.entries:
        shown = log.entries[-LOG_ENTRIES_SHOWN:]
        out(f"  newest {len(shown)} record(s):")
        print_table(["seq", "at", "action", "dataset", "partition", "from", "to", "rows", "run", "reason"],
                    [[e.get("seq"), e.get("at"), e.get("action"), e.get("dataset"), e.get("partition"),
                      e.get("tier_from") or "", e.get("tier_to") or "", e.get("rows", 0), e.get("run_id") or "",
                      e.get("reason") or ""] for e in shown])
    out("")
    out("COMPLIANT" if report.findings.ok else "NOT COMPLIANT: see the violations above")
