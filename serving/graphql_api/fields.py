"""What every resolver module shares: the common arguments, charging a field to the key, and REST's body
checks (a pydantic model's messages become the field's 400)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

import strawberry
from pydantic import BaseModel, ValidationError
from strawberry.types import Info

from serving.graphql_api.context import GraphContext
from serving.query.spec import QueryError

FromArg = Annotated[datetime | None, strawberry.argument(name="from", description="start (ISO-8601); or `range`")]
RangeArg = Annotated[str | None, strawberry.argument(description="15m, 6h, 7d, 1y (default 1h); or from/to")]
FilterArg = Annotated[list[str] | None, strawberry.argument(description="dim:value, dim!=value, dim:a|b")]

Model = TypeVar("Model", bound=BaseModel)


def context_of(info: Info) -> GraphContext:
    return info.context["graph"]


async def charged(info: Info) -> GraphContext:
    """The caller's context, once this field has taken its token of the key's rate limit."""
    ctx = context_of(info)
    await ctx.charge()
    return ctx


def validated(model: type[Model], body: dict[str, Any], what: str) -> Model:
    """``body`` as REST's request model, with REST's checks; what fails is a ``QueryError`` (400) naming it."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise QueryError(f"the {what} is invalid: {problems}") from None
