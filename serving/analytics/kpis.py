"""A tenant's custom KPIs: named formulas over catalogue metrics, kept in the hot store like dashboards.

Every API replica and the CLI see the same KPIs (``sql/clickhouse/012_kpis.sql``, a ReplacingMergeTree read
with FINAL). A formula is checked by the parser (``serving.query.kpi``) before it is stored; a KPI is
computed by asking the query engine for the metrics it names, then applying the formula to each row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common.events import format_ts
from common.hot_store import HotStore
from common.sql_files import sql_sections
from serving.query.kpi import Kpi, KpiError
from serving.query.spec import METRICS

KPI_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class KpiNotFound(LookupError):
    pass


class KpiExists(ValueError):
    """A new KPI whose name the tenant already uses."""


@dataclass(frozen=True)
class SavedKpi:
    kpi: Kpi
    description: str
    version: int
    updated: datetime

    def as_json(self) -> dict[str, Any]:
        return {"name": self.kpi.name, "formula": self.kpi.formula, "metrics": self.kpi.metrics,
                "description": self.description, "version": self.version,
                "updated": format_ts(self.updated)}


def checked(name: str, formula: str) -> Kpi:
    """The KPI, or ``KpiError`` saying what to change (a name may not shadow a catalogue metric)."""
    if not KPI_NAME.match(name or ""):
        raise KpiError("a KPI name is 1-64 lower-case letters, digits and _, starting with a letter")
    if name in METRICS:
        raise KpiError(f"{name!r} is a catalogue metric; choose another name")
    return Kpi.of(name, formula, METRICS)


class KpiStore:
    """CRUD of a tenant's KPIs (blocking calls: run them off the event loop)."""

    def __init__(self, store: HotStore) -> None:
        self._store = store
        self._sql = sql_sections("clickhouse/queries/kpis.sql")

    def list(self, tenant: str) -> list[SavedKpi]:
        return [self._row(r) for r in self._store.query_arrow(self._sql["list"], {"tenant": tenant}).to_pylist()]

    def named(self, tenant: str, names: Iterable[str]) -> dict[str, Kpi]:
        """The tenant's KPIs by name when ``names`` (what a question uses as metrics) go outside the catalogue —
        all of them, so an unknown name is answered with the list of what is known; no lookup at all otherwise,
        so a question over catalogue metrics costs nothing more."""
        if not set(names) - set(METRICS):
            return {}
        return {saved.kpi.name: saved.kpi for saved in self.list(tenant)}

    def get(self, tenant: str, name: str) -> SavedKpi:
        rows = self._store.query_arrow(self._sql["get"], {"tenant": tenant, "name": name}).to_pylist()
        if not rows or rows[0]["deleted"]:
            raise KpiNotFound(f"no KPI {name!r} for this tenant; GET /v1/kpis lists them")
        return self._row(rows[0])

    def put(self, tenant: str, name: str, formula: str, description: str = "") -> SavedKpi:
        kpi = checked(name, formula)
        try:
            version = self.get(tenant, name).version + 1
        except KpiNotFound:
            version = 1
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        self._write(tenant, name, formula, description, version, deleted=False, at=now)
        return SavedKpi(kpi, description, version, now)

    def delete(self, tenant: str, name: str) -> None:
        current = self.get(tenant, name)
        self._write(tenant, name, current.kpi.formula, current.description, current.version + 1, deleted=True,
                    at=datetime.now(UTC))

    def _write(self, tenant: str, name: str, formula: str, description: str, version: int, *, deleted: bool,
               at: datetime) -> None:
        self._store.command(self._sql["put"], {
            "tenant": tenant, "name": name, "formula": formula, "description": description, "version": version,
            "deleted": int(deleted), "updated": at.astimezone(UTC).replace(tzinfo=None)})

    @staticmethod
    def _row(row: dict[str, Any]) -> SavedKpi:
        updated = row["updated"]
        updated = updated.replace(tzinfo=UTC) if updated.tzinfo is None else updated.astimezone(UTC)
        return SavedKpi(Kpi.of(row["name"], row["formula"], METRICS), row["description"], int(row["version"]), updated)
