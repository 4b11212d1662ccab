"""Alert rules, incident states and history in small ClickHouse tables, through the hot-store interface.

Every API replica and the CLI reach the same tables, so a rule created on one replica is evaluated by
whichever replica holds the evaluator lease, and an incident's state survives restarts. Writes are
inserts of new row versions (``sql/clickhouse/008_alerts.sql``); statements live in
``sql/clickhouse/queries/alerts.sql``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from common.hot_store import HotStore
from common.row_versions import RowVersions
from common.sql_files import sql_sections
from serving.alerts.rules import OK, Condition, Rule

_TS = pa.timestamp("ms", tz="UTC")

_RULES_SCHEMA = pa.schema([
    ("tenant", pa.string()), ("id", pa.string()), ("name", pa.string()), ("metric", pa.string()),
    ("filters", pa.string()), ("window_minutes", pa.uint32()), ("condition", pa.string()),
    ("webhook_url", pa.string()), ("enabled", pa.uint8()), ("created_at", _TS), ("updated_at", _TS),
    ("deleted", pa.uint8()), ("version", pa.uint64()),
])
_STATE_SCHEMA = pa.schema([
    ("tenant", pa.string()), ("rule_id", pa.string()), ("state", pa.string()), ("incident_id", pa.string()),
    ("since", _TS), ("evaluated_at", _TS), ("value", pa.float64()), ("baseline", pa.float64()),
    ("outbox", pa.string()), ("version", pa.uint64()),
])
_HISTORY_SCHEMA = pa.schema([
    ("tenant", pa.string()), ("rule_id", pa.string()), ("at", _TS), ("kind", pa.string()), ("state", pa.string()),
    ("incident_id", pa.string()), ("notification_id", pa.string()), ("value", pa.float64()),
    ("baseline", pa.float64()), ("window_start", _TS), ("window_end", _TS), ("attempt", pa.uint32()),
    ("http_status", pa.uint16()), ("detail", pa.string()),
])


@dataclass
class AlertState:
    """Where a rule's incident stands, and the notifications still to deliver (oldest first)."""

    tenant: str
    rule_id: str
    state: str = OK
    incident_id: str = ""
    since: datetime | None = None
    evaluated_at: datetime | None = None
    value: float | None = None
    baseline: float | None = None
    outbox: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class HistoryEntry:
    tenant: str
    rule_id: str
    kind: str  # transition | delivered | delivery_failed | rejected | dropped
    state: str
    incident_id: str = ""
    notification_id: str = ""
    value: float | None = None
    baseline: float | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    attempt: int = 0
    http_status: int | None = None
    detail: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class AlertStore:
    def __init__(self, store: HotStore) -> None:
        self._store = store
        self._sql = sql_sections("clickhouse/queries/alerts.sql")
        self._versions = RowVersions()

    def _query(self, name: str, **params: Any) -> list[dict[str, Any]]:
        return self._store.query_arrow(self._sql[name], params).to_pylist()

    # rules
    def rules(self, tenant: str) -> list[Rule]:
        return [_rule(r) for r in self._query("rules_of_tenant", tenant=tenant)]

    def rule(self, tenant: str, rule_id: str) -> Rule | None:
        rows = self._query("rule", tenant=tenant, id=rule_id)
        return _rule(rows[0]) if rows else None

    def all_rules(self) -> list[Rule]:
        return [_rule(r) for r in self._query("all_rules")]

    def put_rule(self, rule: Rule, *, deleted: bool = False) -> None:
        row = {
            "tenant": rule.tenant, "id": rule.id, "name": rule.name, "metric": rule.metric,
            "filters": json.dumps(rule.filters), "window_minutes": rule.window_minutes,
            "condition": json.dumps(rule.condition.as_dict()), "webhook_url": rule.webhook_url,
            "enabled": int(rule.enabled), "created_at": rule.created_at, "updated_at": rule.updated_at,
            "deleted": int(deleted), "version": self._versions.next(),
        }
        self._store.insert_arrow("alert_rules", pa.Table.from_pylist([row], schema=_RULES_SCHEMA))

    # incident states
    def states(self, tenant: str | None = None) -> dict[tuple[str, str], AlertState]:
        """Every rule's state (the evaluator), or one tenant's."""
        rows = self._query("states") if tenant is None else self._query("states_of_tenant", tenant=tenant)
        return {(r["tenant"], r["rule_id"]): _state(r) for r in rows}

    def state(self, tenant: str, rule_id: str) -> AlertState:
        rows = self._query("state", tenant=tenant, rule_id=rule_id)
        return _state(rows[0]) if rows else AlertState(tenant, rule_id)

    def put_states(self, states: list[AlertState]) -> None:
        """One insert for all of them: each row (a state change with its outbox) is written whole or not at all."""
        if not states:
            return
        rows = [{
            "tenant": s.tenant, "rule_id": s.rule_id, "state": s.state, "incident_id": s.incident_id,
            "since": s.since, "evaluated_at": s.evaluated_at or datetime.now(UTC), "value": s.value,
            "baseline": s.baseline, "outbox": json.dumps(s.outbox), "version": self._versions.next(),
        } for s in states]
        self._store.insert_arrow("alert_state", pa.Table.from_pylist(rows, schema=_STATE_SCHEMA))

    # history
    def add_history(self, entries: list[HistoryEntry]) -> None:
        if not entries:
            return
        rows = [{name: getattr(e, name) for name in _HISTORY_SCHEMA.names} for e in entries]
        self._store.insert_arrow("alert_history", pa.Table.from_pylist(rows, schema=_HISTORY_SCHEMA))

    def history(self, tenant: str, rule_id: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._query("history", tenant=tenant, rule_id=rule_id, limit=limit)
        return list(reversed(rows))  # oldest first


def _rule(row: dict[str, Any]) -> Rule:
    condition = json.loads(row["condition"])
    return Rule(
        id=row["id"], tenant=row["tenant"], name=row["name"], metric=row["metric"],
        filters=json.loads(row["filters"]), window_minutes=int(row["window_minutes"]),
        condition=Condition(**condition), webhook_url=row["webhook_url"], enabled=bool(row["enabled"]),
        created_at=_utc(row["created_at"]), updated_at=_utc(row["updated_at"]),
    )


def _state(row: dict[str, Any]) -> AlertState:
    return AlertState(
        tenant=row["tenant"], rule_id=row["rule_id"], state=row["state"], incident_id=row["incident_id"],
        since=_utc(row["since"]), evaluated_at=_utc(row["evaluated_at"]), value=row["value"],
        baseline=row["baseline"], outbox=json.loads(row["outbox"] or "[]"),
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

