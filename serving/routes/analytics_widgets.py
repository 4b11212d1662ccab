"""Product-analytics widgets of saved dashboards: their query is the request of their own endpoint.

A funnel widget keeps the body of ``POST /v1/funnels``, a retention widget that of ``POST /v1/retention``,
a paths widget that of ``POST /v1/paths`` and a sessions widget the parameters of ``GET /v1/sessions``.
Saving one checks it with the endpoint's own model and rules, so a widget that saves is a question the
endpoint answers, and the messages are the endpoint's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from serving.analytics import definitions as defs
from serving.routes.analytics import (
    FunnelModel,
    PathsModel,
    RangeModel,
    RetentionModel,
    funnel_input,
    resolve_range,
)


class SessionsQueryModel(RangeModel):
    """The parameters of ``GET /v1/sessions`` as a widget keeps them."""

    by: str | None = Field(None, description="entry_page or exit_page")
    non_interactive: list[str] = Field(default_factory=list,
                                       description="event names that do not count as interaction")


ANALYTICS_MODELS: dict[str, type[BaseModel]] = {
    "funnel": FunnelModel, "retention": RetentionModel, "paths": PathsModel, "sessions": SessionsQueryModel}
DEFAULT_RANGE = {"funnel": "7d", "retention": "90d", "paths": "7d", "sessions": "7d"}


def check_analytics_query(chart: str, query: BaseModel) -> None:
    """``QueryError`` (the endpoint's message) unless the endpoint would answer this request now."""
    assert isinstance(query, RangeModel)
    now = datetime.now(UTC)
    start, end = resolve_range(query, now, DEFAULT_RANGE[chart])
    if isinstance(query, FunnelModel):
        defs.funnel_spec(funnel_input(query), start, end)
    elif isinstance(query, RetentionModel):
        defs.retention_spec(query.model_dump(exclude={"range", "from_", "to"}), start, end)
    elif isinstance(query, PathsModel):
        defs.paths_spec(query.model_dump(exclude={"range", "from_", "to"}), start, end)
    elif isinstance(query, SessionsQueryModel):
        defs.sessions_spec({"by": query.by, "non_interactive": query.non_interactive, "tier": query.tier},
                           start, end)


def stored_analytics_query(query: BaseModel) -> dict[str, Any]:
    """The request as the widget keeps it: what the client set, nothing defaulted."""
    return query.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
