"""``/graphql``: the schema over HTTP (POST, and GET for queries) and WebSocket (subscriptions, the
graphql-transport-ws protocol), authenticated like every REST endpoint.

The caller's key is checked and their tenant resolved by the same functions as the REST dependency
(``ApiKeyAuth.authenticate``, ``resolve_tenant``); over HTTP a missing or revoked key is REST's 401 before
any field runs. Only the GraphiQL page (a GET without a query, when introspection is on) is served without a
key: it runs nothing itself and sends the key the user types into its headers. Over WebSocket the key comes
on the handshake's headers or in ``connection_init``'s payload (``{"Authorization": "Bearer <key>"}`` or
``{"key": "<key>"}``), never in the URL; a refused key closes the socket (4403) before any subscription.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import HTTPConnection
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET

from serving.alerts.store import AlertStore
from serving.context import Serving
from serving.dashboards.store import DashboardStore
from serving.graphql_api.context import GraphContext
from serving.graphql_api.guards import Schema, extensions
from serving.graphql_api.schema import Mutation, Query, Subscription
from serving.reports.schedule_store import DeliveryLog, ScheduleStore
from serving.routes.analytics import AnalyticsQuestions
from serving.services.dashboards import DashboardService
from serving.services.kpis import KpiService
from serving.services.live import LiveFeed
from serving.services.queries import QueryAnswers
from serving.services.reports import ReportSchedules
from serving.tenancy.auth import DEFAULT_TENANT, AuthError, keys_sent, resolve_tenant


class _Router(GraphQLRouter):
    """Authenticates a WebSocket on ``connection_init`` (``connect`` in ``graphql_router``)."""

    connect: Any = None

    async def on_ws_connect(self, context: Any) -> Any:
        await self.connect(context)
        return UNSET  # a plain connection_ack


def graphql_router(serving: Serving, alerts: AlertStore) -> GraphQLRouter:
    settings = serving.settings
    schema = Schema(query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions(settings))
    answers = QueryAnswers(serving.engine, serving.cache, settings, serving.kpis)
    dashboards = DashboardService(DashboardStore(serving.store), serving.engine, serving.cache, settings,
                                  serving.kpis)
    feed = LiveFeed(serving.engine, serving.cache, settings, serving.kpis)
    analytics = AnalyticsQuestions(serving)
    assert serving.kpis is not None
    kpis = KpiService(serving.kpis, answers)
    reports = ReportSchedules(ScheduleStore(serving.store), DashboardStore(serving.store),
                              DeliveryLog(serving.store, settings.report_claim_lease_seconds), settings)
    ide = settings.graphql_introspection
    assert serving.streams is not None

    def graph(tenant: str, caller: Any = None, key: str | None = None) -> GraphContext:
        return GraphContext(tenant, caller, serving.auth, answers, dashboards, alerts, feed, serving.streams,
                            settings.live_interval_seconds, analytics, kpis, reports, key)

    async def context(request: HTTPConnection) -> dict[str, Any]:
        named = request.query_params.getlist("tenant")
        if request.scope["type"] == "websocket":  # authenticated on connection_init (connect, below)
            return {"named": named, "header_keys": keys_sent(request.headers)}
        if ide and request.scope.get("method") == "GET" and "query" not in request.query_params:
            return {}  # the GraphiQL page: nothing runs
        if serving.auth is None:  # API keys off (not how `lakehouse serve` runs): the open ?tenant=
            return {"graph": graph(named[0] if named else DEFAULT_TENANT)}
        caller = await serving.auth.authenticate(*keys_sent(request.headers))
        return {"graph": graph(resolve_tenant(caller, named), caller)}

    async def connect(context: dict[str, Any]) -> None:
        params = context.get("connection_params") or {}
        sent = params.get("key") or keys_sent({"authorization": str(params.get("Authorization") or "")})[0]
        keys = {k for k in (sent, *context["header_keys"]) if isinstance(k, str) and k}
        named = context["named"]
        if serving.auth is None:
            context["graph"] = graph(named[0] if named else DEFAULT_TENANT)
            return
        try:
            if len(keys) > 1:
                raise AuthError(400, "two different API keys were sent; send one")
            key = keys.pop() if keys else None
            caller = await serving.auth.authenticate(key, None)
            context["graph"] = graph(resolve_tenant(caller, named), caller, key)
        except AuthError as exc:
            raise ConnectionRejectionError({"error": exc.message}) from None

    router = _Router(schema, path="/graphql", context_getter=context, graphql_ide="graphiql" if ide else None,
                     multipart_uploads_enabled=False, tags=["graphql"],
                     subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,))
    router.connect = connect
    return router
