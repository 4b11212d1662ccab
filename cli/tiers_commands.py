"""``lakehouse hold place|release|list`` and ``lakehouse purge [--dry-run]``: legal holds and the retention purge.

Holds are recorded in the audit log (``storage_tiers.compliance.holds``), so placing and releasing one is itself
tamper-evident; the purge is the same code the ``retention_purge`` Dagster asset runs.
(``lakehouse audit verify`` lives with the audit report, ``cli/audit_commands.py``.)
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime

from common.settings import Settings
from common.terminal import print_table


def _as_of(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--as-of {text!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def cmd_hold(args: argparse.Namespace, settings: Settings) -> int:
    from storage_tiers.compliance.audit_log import AuditLog
    from storage_tiers.compliance.holds import HoldError, active_holds, place_hold, release_hold

    log = AuditLog(settings)
    try:
        if args.action == "place":
            hold = place_hold(log, args.tenant, args.start, args.end, args.reason, placed_by=getpass.getuser())
            print(f"placed {hold.hold_id}: tenant {hold.tenant}, {hold.start} to {hold.end} ({hold.reason})")
        elif args.action == "release":
            hold = release_hold(log, args.hold_id, reason=args.reason or "", released_by=getpass.getuser())
            print(f"released {hold.hold_id}: tenant {hold.tenant}, {hold.start} to {hold.end}; "
                  "its data is purged at the next purge if past retention")
        else:
            holds = active_holds(log)
            print_table(["hold_id", "tenant", "from", "to", "reason", "placed_at", "placed_by"],
                        [[h.hold_id, h.tenant, h.start, h.end, h.reason, h.placed_at, h.placed_by] for h in holds])
    except HoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    from common.hot_store import FlightHotStore, open_hot_store
    from storage_tiers.compliance.audit_log import AuditLog
    from storage_tiers.policy import PolicyError, load_policy
    from storage_tiers.tiers.purge import Purger, PurgeRefused, announce_purged_hours

    try:
        as_of = _as_of(args.as_of)
        policy = load_policy(settings)
    except (ValueError, PolicyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = None if args.skip_hot else open_hot_store(settings)
    if isinstance(store, FlightHotStore) and not store.ping():
        print(f"error: the hot node is not reachable at {settings.hot_node_url}: start it with `lakehouse stack up`, "
              "or run with --skip-hot to purge the lake only", file=sys.stderr)
        return 1
    try:
        report = Purger(settings, policy, AuditLog(settings), as_of, store=store, run_id="cli").run(
            args.dry_run, confirm_large=getattr(args, "confirm_large_purge", False))
    except PurgeRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if store is not None:
            store.close()
    if not args.dry_run:  # cached answers holding purged rows are dropped by the API
        announce_purged_hours(settings.redis_url, report)
    verb = "would purge" if args.dry_run else "purged"
    print_table(["tier", "dataset", "partition", "tenants", "rows", "whole"],
                [[i.tier, i.dataset, i.partition, ",".join(i.tenants), i.rows, i.whole] for i in report.items])
    print(f"{verb} {report.rows:,} rows in {len(report.items)} partition(s) as of {as_of:%Y-%m-%d %H:%M} UTC; "
          f"{len(report.held)} kept by legal holds")
    for blocked in report.blocked:
        print(f"warning: {blocked}", file=sys.stderr)
    return 0


def add_tier_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``hold`` and ``purge`` on the ``lakehouse`` parser."""
    h = sub.add_parser("hold", help="place, release or list legal holds (kept past retention)")
    hs = h.add_subparsers(dest="action", required=True)
    place = hs.add_parser("place", help="hold a tenant's data over a date range")
    place.add_argument("--tenant", required=True)
    place.add_argument("--from", dest="start", required=True, help="first day held, YYYY-MM-DD (UTC)")
    place.add_argument("--to", dest="end", required=True, help="last day held, YYYY-MM-DD (inclusive)")
    place.add_argument("--reason", required=True, help="why (case or ticket number); recorded in the audit log")
    release = hs.add_parser("release", help="release an active hold")
    release.add_argument("hold_id")
    release.add_argument("--reason", default="", help="why; recorded in the audit log")
    hs.add_parser("list", help="list active holds")
    h.set_defaults(func=cmd_hold)
    p = sub.add_parser("purge", help="delete data past its retention from every tier (except legal holds)")
    p.add_argument("--dry-run", action="store_true", help="show what would be purged, change nothing")
    p.add_argument("--as-of", help="purge as of this date/time (UTC), default now")
    p.add_argument("--skip-hot", action="store_true", help="purge the lake only (hot node not running)")
    p.add_argument("--confirm-large-purge", action="store_true",
                   help="allow touching more than LAKEHOUSE_PURGE_MAX_SHARE of the lake's days in one purge")
    p.set_defaults(func=cmd_purge)
