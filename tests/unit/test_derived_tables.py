"""The compliance inventory's list of derived tables names tables that exist and the functions that erase them."""

from __future__ import annotations

import re
from pathlib import Path

from common import day_rollups, session_pieces
from common.lake_tables import LAKE_TABLES
from storage_tiers.compliance.inventory import DERIVED_TABLES

ROOT = Path(__file__).resolve().parents[2]
CREATED = {m.group(1) for f in (ROOT / "sql" / "clickhouse").glob("0*.sql")
           for m in re.finditer(r"CREATE TABLE IF NOT EXISTS (\w+)", f.read_text())}


def test_every_derived_table_exists_where_it_is_listed():
    assert len({d.table for d in DERIVED_TABLES}) == len(DERIVED_TABLES)
    for derived in DERIVED_TABLES:
        if derived.tier == "hot":
            assert derived.table in CREATED, derived.table
        else:
            assert derived.table in LAKE_TABLES, derived.table
        assert derived.holds and derived.retention and derived.erased_by


def test_the_erasing_functions_named_exist():
    modules = {"day_rollups": day_rollups, "session_pieces": session_pieces}
    for derived in DERIVED_TABLES:
        named = f"{derived.erased_by} {derived.retention}"
        for module, name in re.findall(r"(day_rollups|session_pieces)\.(\w+)", named):
            assert callable(getattr(modules[module], name, None)), f"{module}.{name}"
