"""Limits on what one GraphQL document may cost, and the HTTP status a failed field would have had.

A document is checked before anything runs: its depth, aliases and size (Strawberry's limiters) and its
cost (``CostLimit``: every field 1, each field that runs a query ``QUERY_COST`` more, fragments counted
where they are spread; introspection is free: it reads the schema). A refused document answers what was
over which limit and runs nothing.
"""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import FieldNode, FragmentSpreadNode, GraphQLError, InlineFragmentNode, OperationDefinitionNode
from graphql.language import SelectionSetNode
from graphql.validation import NoSchemaIntrospectionCustomRule, ValidationRule
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from common.settings import Settings
from serving.errors import STATUS
from serving.tenancy.auth import AuthError
from serving.tenancy.streams import TooManyStreams
from serving.tenancy.tenants import DirectoryError

QUERY_FIELDS = frozenset({"timeseries", "breakdown", "topn", "query", "data", "funnel", "funnelDropoff", "retention",
                          "paths", "sessions"})  # each runs hot/lake queries
QUERY_COST = 10


class _OverBudget(Exception):
    pass


def cost_limit(max_cost: int) -> type[ValidationRule]:
    class CostLimit(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
            self._spent = 0
            try:
                self._walk(node.selection_set, frozenset())
            except _OverBudget:
                self.report_error(GraphQLError(
                    f"the document costs more than {max_cost} (each field 1, each of {', '.join(sorted(QUERY_FIELDS))} "
                    f"{QUERY_COST + 1}): ask for fewer fields or split it into several requests", node))

        def _walk(self, selections: SelectionSetNode | None, spread: frozenset[str]) -> None:
            for selection in selections.selections if selections else ():
                if isinstance(selection, FieldNode):
                    if selection.name.value.startswith("__"):
                        continue  # introspection reads the schema, not data (GraphiQL asks for all of it)
                    self._spent += 1 + (QUERY_COST if selection.name.value in QUERY_FIELDS else 0)
                    if self._spent > max_cost:
                        raise _OverBudget
                    self._walk(selection.selection_set, spread)
                elif isinstance(selection, InlineFragmentNode):
                    self._walk(selection.selection_set, spread)
                elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in spread:
                    fragment = self.context.get_fragment(selection.name.value)  # cycles: another rule reports them
                    if fragment is not None:
                        self._walk(fragment.selection_set, spread | {selection.name.value})

    return CostLimit


def status_of(error: BaseException | None) -> int | None:
    """The HTTP status REST answers for ``error`` (``serving.errors``), None for an unexpected error."""
    if isinstance(error, AuthError | DirectoryError):
        return error.status
    if isinstance(error, TooManyStreams):
        return 429
    for cls in type(error).__mro__ if error is not None else ():
        if cls in STATUS:
            return STATUS[cls]
    return None


# extensions.code of a field error, the convention GraphQL clients (and fuzzers) read: whose fault it was
CODES = {401: "UNAUTHENTICATED", 403: "FORBIDDEN", 429: "RATE_LIMITED", 503: "SERVICE_UNAVAILABLE", 504: "TIMEOUT"}


def code_of(status: int | None) -> str:
    if status is None:
        return "INTERNAL_SERVER_ERROR"
    return CODES.get(status, "BAD_USER_INPUT" if status < 500 else "INTERNAL_SERVER_ERROR")


class ErrorStatus(SchemaExtension):
    """Adds ``extensions.status`` (REST's status for the same failure) and ``extensions.code`` to each
    error a resolver raised."""

    def on_operation(self) -> Any:
        yield
        result = self.execution_context.result
        for error in (result.errors or []) if result is not None else []:
            if error.original_error is None:
                continue  # the document itself is invalid: graphql-core's message says why
            status = status_of(error.original_error)
            found = {"code": code_of(status)} | ({"status": status} if status is not None else {})
            error.extensions = {**(error.extensions or {}), **found}


class Schema(strawberry.Schema):
    """Logs only the errors that are not the domain's (a bad question is the caller's, not the log's)."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        unexpected = [e for e in errors if e.original_error is not None and status_of(e.original_error) is None]
        if unexpected:
            super().process_errors(unexpected, execution_context)


def _unexpected(error: GraphQLError) -> bool:
    """Hide the message of an error that is not the domain's (it may carry internals); the log keeps it."""
    return error.original_error is not None and status_of(error.original_error) is None


def extensions(settings: Settings) -> list[Any]:
    """Factories of the schema's extensions (Strawberry builds fresh ones per request)."""
    rules: list[type[ValidationRule]] = [cost_limit(settings.graphql_max_cost)]
    if not settings.graphql_introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return [
        lambda: MaxTokensLimiter(max_token_count=settings.graphql_max_tokens),
        lambda: QueryDepthLimiter(max_depth=settings.graphql_max_depth),
        lambda: MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases),
        lambda: AddValidationRules(rules),
        ErrorStatus,
        lambda: MaskErrors(should_mask_error=_unexpected,
                           error_message="internal error; the server log has the details"),
    ]
