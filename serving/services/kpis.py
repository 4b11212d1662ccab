"""Custom KPIs' service: CRUD of a tenant's formulas off the event loop, and a KPI's values as a query.

A KPI's values are the answer of the query that names it as its metric (``QueryAnswers``: cache, timeout,
tiers), so ``GET /v1/kpis/{name}/data`` and ``/v1/query`` asking the same are answered alike. Errors are the
domain's — ``KpiNotFound``, ``KpiExists``, ``KpiError`` (a formula that cannot be accepted), and the query's —
mapped to statuses by ``serving.errors``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from serving.analytics.kpis import KpiExists, KpiNotFound, KpiStore, SavedKpi
from serving.query.engine import QueryResult
from serving.query.spec import QuerySpec, SpecInput, parse_filter_params
from serving.services.queries import Answer, QueryAnswers, query_table


class KpiService:
    def __init__(self, store: KpiStore, answers: QueryAnswers) -> None:
        self._store = store
        self._answers = answers

    async def list(self, tenant: str) -> list[SavedKpi]:
        return await run_in_threadpool(self._store.list, tenant)

    async def get(self, tenant: str, name: str) -> SavedKpi:
        return await run_in_threadpool(self._store.get, tenant, name)

    async def create(self, tenant: str, name: str, formula: str, description: str) -> SavedKpi:
        try:
            await self.get(tenant, name)
        except KpiNotFound:
            return await run_in_threadpool(self._store.put, tenant, name, formula, description)
        raise KpiExists(f"KPI {name!r} exists; PUT /v1/kpis/{name} changes it")

    async def replace(self, tenant: str, name: str, formula: str, description: str) -> SavedKpi:
        await self.get(tenant, name)  # KpiNotFound: PUT changes an existing KPI, POST makes one
        return await run_in_threadpool(self._store.put, tenant, name, formula, description)

    async def delete(self, tenant: str, name: str) -> None:
        await run_in_threadpool(self._store.delete, tenant, name)

    async def data(self, tenant: str, name: str, range_: str | None, from_: datetime | None, to: datetime | None,
                   granularity: str | None, by: str | None, filters: list[str], tier: str) -> Answer:
        """The KPI over time (``granularity``) or by a dimension (``by``): its formula applied to each row of
        the catalogue metrics it reads."""
        saved = await self.get(tenant, name)

        def kpi_shape(spec: QuerySpec, result: QueryResult) -> dict[str, Any]:
            return {"kpi": name, "formula": saved.kpi.formula, "metrics": saved.kpi.metrics,
                    **query_table(spec, result)}

        raw = SpecInput(metrics=[name], range=range_, start=from_, end=to, granularity=granularity,
                        dimensions=[by] if by else [], filters=parse_filter_params(filters), tier=tier)
        return await self._answers.answer(tenant, raw, kpi_shape)
