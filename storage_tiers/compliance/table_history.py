"""The audit log checked against the Delta tables' own history.

Every audit record of a table commit (``move``, ``purge``, ``compact_cold``; restatements and archive runs are
recorded in the tables themselves) names the table and the version it made (``details.table``,
``details.table_version``) and, for deletes, the rows deleted and files removed and added. ``verify_tables``
reads each such version's commit from the table's log and checks that it is the commit the record says: the
lakehouse operation (``lakehouse.operation``), the partition (``lakehouse.partition``) and delta-rs' operation
metrics (``num_deleted_rows``, ``num_removed_files``, ``num_added_files``). A record and a table that disagree mean
one of them was altered (or the record was written for another lake); a commit the log no longer holds
(cleaned up past the log retention, 400 days) cannot be checked and is counted, not reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.lake_tables import LAKE_TABLES, OPERATION_KEY, PARTITION_KEY, commit_info
from common.settings import Settings

# audit action -> the lakehouse operations its commit may carry
EXPECTED_OPERATIONS = {"move": {"move"}, "purge": {"purge"}, "compact_cold": {"cold", "migrate", "compact"}}
# audit detail -> delta-rs operation metric
METRICS = {"deleted_rows": "num_deleted_rows", "removed_files": "num_removed_files", "added_files": "num_added_files"}


@dataclass
class TableCheck:
    checked: int = 0  # records whose commit was found and compared
    unverifiable: int = 0  # records whose commit the log no longer holds
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_tables(settings: Settings, records: list[dict[str, Any]]) -> TableCheck:
    """Check every record that names a table version against that version's commit (see the module docstring)."""
    result = TableCheck()
    for record in records:
        details = record.get("details") or {}
        name, version = details.get("table"), details.get("table_version")
        if not name or version is None or record.get("action") not in EXPECTED_OPERATIONS:
            continue
        label = f"seq {int(record.get('seq', 0))} ({record['action']} {record.get('partition')})"
        table = LAKE_TABLES.get(str(name))
        if table is None:
            result.problems.append(f"{label}: names the unknown table {name!r}")
            continue
        info = commit_info(settings, table, int(version))
        if info is None:
            result.unverifiable += 1
            continue
        result.checked += 1
        operation = info.get(OPERATION_KEY)
        if operation not in EXPECTED_OPERATIONS[record["action"]]:
            result.problems.append(f"{label}: {name} version {version} is a {operation or info.get('operation')!r} "
                                   f"commit, not a {record['action']}")
            continue
        if info.get(PARTITION_KEY) != record.get("partition"):
            result.problems.append(f"{label}: {name} version {version} changed {info.get(PARTITION_KEY)!r}, "
                                   f"the record says {record.get('partition')!r}")
        metrics = info.get("operationMetrics") or {}
        for detail, metric in METRICS.items():
            if details.get(detail) is not None and metric in metrics and int(metrics[metric]) != int(details[detail]):
                result.problems.append(f"{label}: {detail} {details[detail]} in the record, {metrics[metric]} in "
                                       f"{name} version {version}")
    return result
