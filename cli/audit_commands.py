"""``lakehouse audit``: the compliance report (table, JSON or HTML) and the audit log's verification.

``lakehouse audit [report] [--format table|json|html] [--output FILE] [--as-of DATE]`` inventories every
dataset in every tier, applies the retention rules and prints or writes the report; it exits 0 when
compliant and 1 when there is any violation (the report is produced either way), so it can gate a
pipeline. ``lakehouse audit verify`` checks the hash chain of the audit log and exits 1 if it was altered.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from common.settings import Settings


def parse_as_of(text: str | None) -> datetime | None:
    """``YYYY-MM-DD`` (that day at 00:00 UTC) or an ISO date-time (UTC when it has no offset)."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--as-of {text!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def open_hot_for_audit(settings: Settings) -> tuple[object | None, str | None]:
    """The hot store, or (None, why) when it cannot be reached: the report then says the hot tier is unread."""
    from common.hot_store import FlightHotStore, HotStoreError, open_hot_store

    try:
        store = open_hot_store(settings)
    except HotStoreError as exc:
        return None, str(exc)
    if isinstance(store, FlightHotStore) and not store.ping():
        store.close()
        return None, (f"the hot node is not reachable at {settings.hot_node_url}: start it with `lakehouse stack up` "
                      "(or `lakehouse serve`), or set LAKEHOUSE_HOT_NODE_URL")
    return store, None


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "verify":
        return _verify(settings)
    from cli.audit_report_tables import print_report
    from storage_tiers.compliance.audit_report import report_html, report_json, run_audit
    from storage_tiers.policy import PolicyError

    try:
        as_of = parse_as_of(args.as_of)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store, hot_error = open_hot_for_audit(settings)
    try:
        report = run_audit(settings, store, as_of=as_of, hot_error=hot_error)  # type: ignore[arg-type]
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if store is not None:
            store.close()  # type: ignore[attr-defined]
    if args.format == "json":
        text = json.dumps(report_json(report), indent=1, default=str) + "\n"
    elif args.format == "html":
        text = report_html(report)
    elif args.output:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            print_report(report)
        text = buffer.getvalue()
    else:
        print_report(report)
        text = ""
    if args.output:
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        counts = report.findings.counts()
        found = ", ".join(f"{k} {n}" for k, n in counts.items() if n) or "no violation"
        print(f"wrote {path} ({args.format}): {found}; audit log "
              f"{'verified' if report.log.ok else 'NOT INTACT'}", file=sys.stderr)
    elif text:
        sys.stdout.write(text)
    return 0 if report.findings.ok else 1


def _verify(settings: Settings) -> int:
    """The hash chain, then every record of a table commit against the table's history."""
    from storage_tiers.compliance.audit_log import AuditLog
    from storage_tiers.compliance.table_history import verify_tables

    log = AuditLog(settings)
    result = log.verify()
    print(result)
    tables = verify_tables(settings, log.records())
    print(f"table history: {tables.checked} commit record(s) match their table's version"
          + (f", {tables.unverifiable} no longer in the tables' logs" if tables.unverifiable else ""))
    for problem in tables.problems:
        print(f"  {problem}")
    return 0 if result.ok and tables.ok else 1


def add_audit_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``lakehouse audit`` on the main parser's subcommands."""
    a = sub.add_parser(
        "audit", help="compliance report: what is in which tier, retention violations, the verified audit log",
        description="Inventory every dataset per tier, check retention, gaps, tiers and warm copies, and verify "
                    "the audit log. Exit status: 0 compliant, 1 violations (or `verify`: log altered), 2 bad input.")
    a.add_argument("action", nargs="?", choices=["report", "verify"], default="report",
                   help="report (default) or verify (the audit log's hash chain, and its table commits against "
                        "the tables' history)")
    a.add_argument("--format", choices=["table", "json", "html"], default="table", help="output format")
    a.add_argument("--output", help="write the report to this file instead of standard output")
    a.add_argument("--as-of", help="judge ages as of this UTC date (YYYY-MM-DD) or date-time; default now")
    a.set_defaults(func=cmd_audit)
