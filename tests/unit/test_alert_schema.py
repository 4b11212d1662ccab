"""The alert tables are described four times (the migration, the Arrow schemas the store inserts with, the
store's dataclasses, the API's pydantic models): this checks that all four agree, column by column."""

from __future__ import annotations

import dataclasses
import re
import types
import typing

import pyarrow as pa
import pytest

from common.sql_files import sql_file
from serving.alerts import store
from serving.routes.alerts import HistoryItem

_ARROW = {"String": pa.string(), "UInt8": pa.uint8(), "UInt16": pa.uint16(), "UInt32": pa.uint32(),
          "UInt64": pa.uint64(), "Float64": pa.float64(), "DateTime64(3, 'UTC')": pa.timestamp("ms", tz="UTC")}
_PYTHON = {"String": "str", "UInt8": "int", "UInt16": "int", "UInt32": "int", "UInt64": "int", "Float64": "float",
           "DateTime64(3, 'UTC')": "datetime"}


def table_columns(table: str) -> dict[str, tuple[str, bool]]:
    """{column: (ClickHouse type without Nullable/LowCardinality, nullable)} from the migration."""
    body = re.search(rf"CREATE TABLE IF NOT EXISTS {table}\s*\((.*?)\)\s*ENGINE", sql_file("clickhouse/008_alerts.sql"),
                     re.S)
    assert body, f"{table} is not in 008_alerts.sql"
    columns = {}
    for line in body.group(1).strip().splitlines():
        name, kind = line.strip().rstrip(",").split(None, 1)
        nullable = kind.startswith("Nullable(")
        kind = kind.removeprefix("Nullable(").removeprefix("LowCardinality(")
        columns[name] = (kind[:-1] if kind.count(")") > kind.count("(") else kind, nullable)
    return columns


@pytest.mark.parametrize(("table", "schema"), [("alert_rules", store._RULES_SCHEMA),
                                               ("alert_state", store._STATE_SCHEMA),
                                               ("alert_history", store._HISTORY_SCHEMA)])
def test_the_arrow_schemas_the_store_inserts_with_match_the_migration(table: str, schema: pa.Schema) -> None:
    assert {f.name: f.type for f in schema} == {name: _ARROW[kind] for name, (kind, _) in table_columns(table).items()}


def _hint(owner: type, name: str) -> tuple[str, bool]:
    hint = typing.get_type_hints(owner)[name]
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else ()
    plain = [a for a in args if a is not type(None)] or [hint]
    return plain[0].__name__, type(None) in args


def test_the_history_entry_dataclass_has_every_column_with_its_type_and_nullability() -> None:
    columns = table_columns("alert_history")
    fields = {f.name for f in dataclasses.fields(store.HistoryEntry)}
    assert fields == set(columns)
    hints = {n: _hint(store.HistoryEntry, n) for n in fields}
    assert hints == {n: (_PYTHON[k], null) for n, (k, null) in columns.items()}


def test_the_api_history_item_is_a_history_row_without_its_tenant_and_rule() -> None:
    columns = {n: c for n, c in table_columns("alert_history").items() if n not in ("tenant", "rule_id")}
    fields = set(HistoryItem.model_fields)
    assert fields == set(columns)
    assert {n: _hint(HistoryItem, n) for n in fields} == {n: (_PYTHON[k], null) for n, (k, null) in columns.items()}
