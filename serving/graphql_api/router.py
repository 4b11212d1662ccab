"""``/graphql``: the schema over HTTP (POST, and GET for queries), authenticated like every REST endpoint.

The caller's key is checked and their tenant resolved by the same functions as the REST dependency
(``ApiKeyAuth.authenticate``, ``resolve_tenant``); a missing or revoked key is REST's 401 before any
field runs. Only the GraphiQL page (a GET without a query, when introspection is on) is served without a key:
it runs nothing itself and sends the key the user types into its headers.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from strawberry.fastapi import GraphQLRouter

from serving.alerts.store import AlertStore
from serving.context import Serving
from serving.dashboards.store import DashboardStore
from serving.graphql_api.context import GraphContext
from serving.graphql_api.guards import Schema, extensions
from serving.graphql_api.schema import Mutation, Query
from serving.services.dashboards import DashboardService
from serving.services.queries import QueryAnswers
from serving.tenancy.auth import DEFAULT_TENANT, keys_sent, resolve_tenant


def graphql_router(serving: Serving, alerts: AlertStore) -> GraphQLRouter:
    settings = serving.settings
    schema = Schema(query=Query, mutation=Mutation, extensions=extensions(settings))
    answers = QueryAnswers(serving.engine, serving.cache, settings)
    dashboards = DashboardService(DashboardStore(serving.store), serving.engine, serving.cache, settings)
    ide = settings.graphql_introspection

    async def context(request: Request) -> dict[str, Any]:
        if ide and request.method == "GET" and "query" not in request.query_params:
            return {}  # the GraphiQL page: nothing runs
        named = request.query_params.getlist("tenant")
        if serving.auth is None:  # API keys off (not how `lakehouse serve` runs): the open ?tenant=
            return {"graph": GraphContext(named[0] if named else DEFAULT_TENANT, None, None, answers, dashboards,
                                          alerts)}
        caller = await serving.auth.authenticate(*keys_sent(request.headers))
        return {"graph": GraphContext(resolve_tenant(caller, named), caller, serving.auth, answers, dashboards,
                                      alerts)}

    return GraphQLRouter(schema, path="/graphql", context_getter=context, graphql_ide="graphiql" if ide else None,
                         multipart_uploads_enabled=False, tags=["graphql"])
