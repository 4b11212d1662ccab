"""The ``reports`` resource: what the scheduled reports' sensor and job need besides the hot store.

``as_of`` is empty in production (the sensor's tick time); a test sets it to move the sensor's clock to a
report's firing time without touching any clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from common.hot_store import HotStore
from orchestration.resources import LakehouseResource
from serving.query.engine import QueryEngine
from serving.services.reports import ScheduledReports


class ReportsResource(dg.ConfigurableResource):
    """Renders and delivers scheduled reports with the settings' SMTP server and webhook egress policy."""

    lakehouse: LakehouseResource
    as_of: str = Field(default="", description="ISO instant (UTC) the sensor looks for due reports at; empty: now.")

    def instant(self) -> datetime:
        if not self.as_of:
            return datetime.now(UTC)
        moment = datetime.fromisoformat(self.as_of.replace("Z", "+00:00"))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    def reports(self, store: HotStore) -> ScheduledReports:
        settings = self.lakehouse.settings()
        return ScheduledReports(settings, store, QueryEngine.for_settings(settings, store))


def reports_resources(lakehouse: LakehouseResource | None = None,
                      as_of: str = "") -> dict[str, dg.ConfigurableResource]:
    """The ``reports`` resource over ``lakehouse`` (the code location's, or a test's pinned settings)."""
    return {"reports": ReportsResource(lakehouse=lakehouse or LakehouseResource(), as_of=as_of)}
