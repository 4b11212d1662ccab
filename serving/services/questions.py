"""The named questions (time series, breakdown, top-N): their spec input and the shape of their answer.

REST (``serving.routes.queries``) and GraphQL (``serving.graphql_api``) both ask them through here and
``QueryAnswers``, so the same question asked either way is one cached answer with one shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from serving.query.engine import QueryResult
from serving.query.spec import DIMENSIONS, GRANULARITIES, METRICS, QuerySpec, SpecInput, parse_filter_params
from serving.services.queries import Shape, bucket_iso

Question = tuple[SpecInput, Shape]


def catalog() -> dict[str, Any]:
    """What can be asked: metrics with their descriptions, dimensions, granularities and tiers."""
    return {"metrics": {name: m.description for name, m in METRICS.items()}, "dimensions": list(DIMENSIONS),
            "granularities": list(GRANULARITIES), "tiers": ["auto", "hot", "warm", "cold"]}


def spec_input(metric: str, range_: str | None, from_: datetime | None, to: datetime | None, filters: list[str],
               tier: str, **extra: Any) -> SpecInput:
    """One metric's spec input from request parameters (``filters`` as ``dim:value`` strings)."""
    return SpecInput(metrics=[metric], range=range_, start=from_, end=to, filters=parse_filter_params(filters),
                     tier=tier, **extra)


def timeseries(metric: str, dims: list[str], range_: str | None, from_: datetime | None, to: datetime | None,
               granularity: str, filters: list[str], tier: str, **extra: Any) -> Question:
    """``extra``: further ``SpecInput`` fields the endpoint takes (e.g. a time zone or a fill policy)."""

    def shape(spec: QuerySpec, result: QueryResult) -> dict[str, Any]:
        series: dict[tuple, dict[str, Any]] = {}
        for row in result.rows:
            key = tuple(row[1:-1])
            entry = series.setdefault(key, {"group": dict(zip(dims, key, strict=True)), "points": []})
            entry["points"].append([bucket_iso(row[0]), row[-1]])
        return {"metric": metric, "group_by": dims, "series": list(series.values())}

    raw = spec_input(metric, range_, from_, to, filters, tier, granularity=granularity, dimensions=dims, **extra)
    return raw, shape


def breakdown(metric: str, by: str, range_: str | None, from_: datetime | None, to: datetime | None,
              filters: list[str], limit: int, tier: str, **extra: Any) -> Question:
    def shape(spec: QuerySpec, result: QueryResult) -> dict[str, Any]:
        return {"metric": metric, "by": by, "filters": [[f.field, f.op, list(f.values)] for f in spec.filters],
                "rows": [{by: row[0], "value": row[1]} for row in result.rows]}

    raw = spec_input(metric, range_, from_, to, filters, tier, dimensions=[by], limit=limit,
                     order_by=[{"field": metric, "direction": "desc"}], **extra)
    return raw, shape


def topn(metric: str, by: str, n: int, range_: str | None, from_: datetime | None, to: datetime | None,
         filters: list[str], tier: str, **extra: Any) -> Question:
    def shape(spec: QuerySpec, result: QueryResult) -> dict[str, Any]:
        return {"metric": metric, "by": by, "n": n,
                "rows": [{"rank": i + 1, by: row[0], "value": row[1]} for i, row in enumerate(result.rows)]}

    raw = spec_input(metric, range_, from_, to, filters, tier, dimensions=[by], limit=n,
                     order_by=[{"field": metric, "direction": "desc"}], **extra)
    return raw, shape
