"""The JSON of a query, as ``POST /v1/query`` takes it and as a saved widget or an alert rule keeps it.

One pydantic model, so a widget's query is checked exactly like an ad-hoc one; ``spec_input`` hands it
to ``serving.query.spec.build_spec``, which decides whether it can be answered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from serving.query.spec import SpecInput


class FilterModel(BaseModel):
    field: str = Field(description="a dimension (event, country, device, page) or a metric (for value ranges)")
    op: str = Field("=", description="dimensions: =, !=, in, not in; metrics: >, >=, <, <=, between")
    value: str | float | None = None
    values: list[str | float] | None = None


class OrderModel(BaseModel):
    field: str
    direction: str = "desc"


class QueryModel(BaseModel):
    """An ad-hoc query. Names come from `/v1/catalog`; no SQL is accepted."""

    metrics: list[str] = Field(min_length=1, examples=[["page_views", "unique_users"]])
    dimensions: list[str] = Field(default_factory=list, examples=[["country"]])
    filters: list[FilterModel] = Field(default_factory=list)
    range: str | None = Field(None, description="15m, 6h, 7d, 1y … ending now (default 1h); or use from/to")
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None
    granularity: str | None = Field(None, description="minute, hour, day, auto; omit for one total per group")
    order_by: list[OrderModel] = Field(default_factory=list)
    limit: int | None = Field(None, ge=1, le=10_000)
    tier: str = Field("auto", description="auto routes by age; hot, warm or cold force one tier")
    tz: str = Field("UTC", description="IANA time zone whose calendar days the day buckets are")
    fill: str = Field("none", description="empty buckets: auto (0 for counts and sums, null for unique users), "
                                          "zero, null, or none (left out)")

    model_config = {"populate_by_name": True}


def spec_input(query: QueryModel) -> SpecInput:
    """The JSON of ``POST /v1/query`` (also a saved widget's query) as the spec input ``build_spec`` checks."""
    return SpecInput(
        metrics=query.metrics, range=query.range, start=query.from_, end=query.to, granularity=query.granularity,
        dimensions=query.dimensions, limit=query.limit, tier=query.tier, tz=query.tz, fill=query.fill,
        filters=[f.model_dump(exclude_none=True) for f in query.filters],
        order_by=[o.model_dump() for o in query.order_by],
    )


def stored_query(query: QueryModel) -> dict[str, Any]:
    """A query as a saved widget keeps it: what the client set, nothing defaulted."""
    return query.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True) | {
        "metrics": query.metrics}
