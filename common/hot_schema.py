"""Versioned, idempotent migrations of the hot tier from ``sql/clickhouse/NNN_name.sql``.

Each file is applied once, in order, and recorded with its checksum in ``schema_migrations``; an
applied file whose text later changed is reported instead of silently diverging. The statements
themselves use ``IF NOT EXISTS`` so that a crash between a statement and the record is harmless.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from common.hot_store import HotStore, HotStoreError
from common.settings import REPO_ROOT

MIGRATIONS_DIR = REPO_ROOT / "sql" / "clickhouse"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def statements(self) -> list[str]:
        without_comments = "\n".join(line for line in self.text.splitlines() if not line.strip().startswith("--"))
        return [s.strip() for s in without_comments.split(";") if s.strip()]


def load_migrations(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    return found


def migrate(store: HotStore, folder: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the pending migrations; returns the names applied now."""
    store.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, checksum String, "
        "applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"
    )
    rows = store.query_arrow("SELECT version, name, checksum FROM schema_migrations").to_pylist()
    applied = {r["version"]: r for r in rows}
    done = []
    for migration in load_migrations(folder):
        if migration.version in applied:
            if applied[migration.version]["checksum"] != migration.checksum:
                raise HotStoreError(
                    f"migration {migration.name} changed after it was applied; add a new numbered file "
                    "instead of editing an applied one"
                )
            continue
        for statement in migration.statements():
            store.command(statement)
        store.command(
            "INSERT INTO schema_migrations (version, name, checksum) "
            "VALUES ({version:UInt32}, {name:String}, {checksum:String})",
            {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
        )
        done.append(migration.name)
    return done
