"""Upkeep of the lake's Delta tables: compaction of small files, vacuum, checkpoints.

Why it is needed: every archive run, restatement, move and purge is a commit, and each may leave an hour with
several small files (a late hour archived again, a tenant cut out of an hour) and the log with many small
JSON commits. Readers plan from the log, so both cost time on every query (``bench/lake_sql.py``); storage
keeps every file a newer version superseded until vacuum removes it.

``maintain_table`` does, for one table:

1. **compaction** (``optimize.compact``): the files of each partition that holds more than one are rewritten
   as few files of up to ``TARGET_FILE_BYTES``, in one commit (``lakehouse.operation = optimize``). The rows and
   their values do not change (a test compares every answer before and after), only how many files hold them;
   the replaced files stay readable by time travel until vacuum;
2. **vacuum** of files no version younger than the history window reads (the tier policy's ``vacuum.history``,
   the window the tier movers keep too; an erasure vacuums at once, in the purge);
3. **checkpoint**: the table's state written as one Parquet checkpoint, so opening the table reads it plus the
   commits after it instead of every JSON commit; then the log entries older than the table's log retention
   (``delta.logRetentionDuration``, 400 days) are cleaned up.

It never forks (delta-rs panics in a forked child) and holds no lock: concurrent writers conflict only with a
compaction of the partition they rewrite, and delta-rs then fails the compaction (its files stay; the next run
compacts again), never the writer's commit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from common.lake_tables import (
    TARGET_FILE_BYTES,
    WarmTable,
    add_actions,
    commit_metadata,
    open_table,
    vacuum,
    writer_properties,
)
from common.settings import Settings
from storage_tiers.policy import DEFAULT_HISTORY_WINDOW


@dataclass
class MaintenanceResult:
    """What maintenance did to one table (also the Dagster metadata of the maintenance asset)."""

    table: str
    version_before: int | None = None
    version_after: int | None = None
    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    rows: int = 0
    files_compacted: int = 0  # files rewritten by the compaction
    files_written: int = 0  # files the compaction wrote in their place
    files_vacuumed: int = 0  # files physically removed
    checkpoint_version: int | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _live(delta: Any) -> tuple[int, int, int]:
    """Files, bytes and rows of a version, from its log."""
    actions = add_actions(delta)
    sizes = actions["size_bytes"].to_pylist()
    rows = actions["num_records"].to_pylist() if "num_records" in actions.column_names else []
    return len(sizes), int(sum(sizes)), int(sum(r or 0 for r in rows))


def maintain_table(settings: Settings, table: WarmTable, history: timedelta = DEFAULT_HISTORY_WINDOW,
                   compact: bool = True, checkpoint: bool = True) -> MaintenanceResult:
    """Compact, vacuum (files older than ``history``: the tier policy's ``vacuum.history``) and checkpoint
    one table; a table never written is left alone."""
    from deltalake import CommitProperties

    result = MaintenanceResult(table.name)
    delta = open_table(settings, table)
    if delta is None:
        result.notes.append("no table yet")
        return result
    result.version_before = int(delta.version())
    result.files_before, result.bytes_before, result.rows = _live(delta)
    if compact:
        metrics = delta.optimize.compact(
            target_size=TARGET_FILE_BYTES, writer_properties=writer_properties(table),
            commit_properties=CommitProperties(custom_metadata=commit_metadata(
                "optimize", "", {"reason": "compaction of small files", "target_bytes": TARGET_FILE_BYTES}),
                max_commit_retries=50))
        result.files_compacted = int(metrics.get("numFilesRemoved", 0))
        result.files_written = int(metrics.get("numFilesAdded", 0))
    result.files_vacuumed = len(vacuum(settings, table, history, delta))
    if checkpoint:
        delta.create_checkpoint()
        delta.cleanup_metadata()
        result.checkpoint_version = int(delta.version())
    delta = open_table(settings, table)
    assert delta is not None
    result.version_after = int(delta.version())
    result.files_after, result.bytes_after, rows_after = _live(delta)
    if rows_after != result.rows:  # compaction rewrites files, never rows: say so loudly if it ever did
        raise RuntimeError(f"{table.name}: {result.rows} rows before maintenance, {rows_after} after; "
                           f"inspect the table's history (versions {result.version_before}..{result.version_after})")
    return result


def maintain_lake(settings: Settings, tables: list[WarmTable] | None = None,
                  history: timedelta = DEFAULT_HISTORY_WINDOW) -> list[MaintenanceResult]:
    """``maintain_table`` for every Delta table of the lake (or ``tables``)."""
    from common.lake_tables import LAKE_TABLES

    return [maintain_table(settings, table, history) for table in (tables or list(LAKE_TABLES.values()))]
