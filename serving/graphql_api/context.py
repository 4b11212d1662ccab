"""What a GraphQL resolver may use: the caller's tenant (from the API key only) and the REST services.

The context is built per request by the same auth dependency as REST, so a GraphQL field can never name
another tenant: no field or argument takes a tenant. Every query-running root field after the first is
charged once more to the key's rate limit (the request itself paid for the first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from serving.alerts.store import AlertStore
from serving.routes.analytics import AnalyticsQuestions
from serving.services.dashboards import DashboardService
from serving.services.kpis import KpiService
from serving.services.live import LiveFeed
from serving.services.queries import QueryAnswers
from serving.services.reports import ReportSchedules
from serving.tenancy.auth import ApiKeyAuth, AuthError, Caller
from serving.tenancy.streams import StreamSlots


@dataclass
class GraphContext:
    tenant: str
    caller: Caller | None
    auth: ApiKeyAuth | None
    answers: QueryAnswers
    dashboards: DashboardService
    alerts: AlertStore
    feed: LiveFeed
    streams: StreamSlots
    live_interval_seconds: float
    analytics: AnalyticsQuestions  # funnels, retention, paths, sessions: what their REST routes ask
    kpis: KpiService
    reports: ReportSchedules  # report schedules: what /v1/reports/schedules saves
    key: str | None = None  # the key itself, for subscriptions to notice its revocation
    charged: int = field(default=0)  # root fields resolved so far in this request

    async def charge(self) -> None:
        """One more root field: the first rides on the request's own token, every further one takes one."""
        self.charged += 1
        caller = self.caller
        if self.charged == 1 or self.auth is None or caller is None or caller.rate_per_second is None:
            return
        decision = await self.auth.limiter.take(caller.key_id, caller.rate_per_second, caller.burst)
        if not decision.allowed:
            raise AuthError(429, f"rate limit of key {caller.key_id} exceeded ({caller.rate_per_second:g} "
                                 f"requests/s, burst {caller.burst}) by the fields of this document; retry after "
                                 f"{decision.retry_after_s} s", {"Retry-After": str(decision.retry_after_s)})
