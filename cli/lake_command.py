"""``lakehouse lake migrate [--dry-run]``: move a lake written before the Delta tables into them, once.

The work is ``storage_tiers.lake.migration.migrate_lake``: idempotent (a second run finds nothing to do),
resumable (an interrupted run is simply run again) and verified hour by hour before old files are deleted.
"""

from __future__ import annotations

import argparse
from typing import Any

from common.settings import Settings


def add_lake_parser(sub: Any) -> None:  # argparse's _SubParsersAction
    p = sub.add_parser("lake", help="maintain the lake's tables (migrate: Hive folders → Delta tables)")
    p.add_argument("action", choices=["migrate"])
    p.add_argument("--dry-run", action="store_true", help="list the hours and cold days to move; change nothing")
    p.set_defaults(func=cmd_lake)


def cmd_lake(args: argparse.Namespace, settings: Settings) -> int:
    from storage_tiers.lake.migration import migrate_lake

    report = migrate_lake(settings, dry_run=args.dry_run)
    verb = "would migrate" if args.dry_run else "migrated"
    print(f"{verb} {len(report.migrated)} hour(s) ({report.rows:,} rows) of {settings.effective_lake_uri}; "
          f"{len(report.kept_newer)} hour(s) already newer in the tables (old files removed)")
    for problem in report.problems:
        print(f"problem: {problem}")
    if report.problems:
        print("the hours above keep their old files; fix what is named and run `lakehouse lake migrate` again")
        return 1
    return 0
