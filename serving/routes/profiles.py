"""User profiles: per-user properties of the caller's tenant, upserted one by one, in batches or from a file.

Routes parse and shape; ``serving.services.profiles`` decides. Properties are used by product analytics as
``profile.<property>`` (funnel step filters and breakdowns, retention breakdowns), joined at query time with
each user's newest profile version (see ``serving/analytics/profiles.py`` for why).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from serving.analytics.profiles import ProfileStore
from serving.context import Serving
from serving.services.profiles import ProfileService

PropertyValue = str | int | float | None


class ProfileIn(BaseModel):
    properties: dict[str, PropertyValue] = Field(
        examples=[{"plan": "pro", "campaign": "spring-sale", "signup_date": "2026-03-01"}],
        description="names: lower-case letters, digits, _; values: strings or numbers (kept as strings); "
                    "null removes the property")
    replace: bool = Field(False, description="true: the profile becomes exactly these properties; "
                                             "false: they are merged into the current ones")


class ProfileItem(BaseModel):
    user_id: str
    properties: dict[str, PropertyValue] = Field(default_factory=dict)


class ProfilesIn(BaseModel):
    profiles: list[ProfileItem] = Field(max_length=10_000)
    replace: bool = False


FILE_BODY = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string"}, "example": "user_id,plan,campaign\nu1,pro,spring\nu2,free,\n"},
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}}}


def profiles_router(serving: Serving) -> APIRouter:
    router = APIRouter(prefix="/v1/profiles", tags=["user profiles"])
    tenant_of = serving.tenant_dependency
    service = ProfileService(ProfileStore(serving.store), serving.cache)

    @router.post("", summary="Upsert many users' profiles (at most 10,000 per request)")
    async def put_many(tenant: str = Depends(tenant_of), body: ProfilesIn = Body(...)) -> dict[str, Any]:
        count = await service.put_many(tenant, [p.model_dump() for p in body.profiles], body.replace)
        return {"upserted": count}

    @router.post("/import", summary="Upsert profiles from a CSV (header row) or Parquet file with a user_id column",
                 description="The file is the request body; every other column is a property (empty cells and "
                             "nulls leave a property as it is). `format` is csv or parquet.",
                 openapi_extra=FILE_BODY)
    async def load(request: Request, tenant: str = Depends(tenant_of),
                   format_: str = Query("csv", alias="format", description="csv or parquet"),
                   replace: bool = False) -> dict[str, Any]:
        return {"upserted": await service.load(tenant, await request.body(), format_, replace)}

    @router.get("/{user_id}", summary="A user's profile and its versions, newest first")
    async def get(user_id: str, tenant: str = Depends(tenant_of),
                  versions: int = Query(20, ge=1, le=1000, description="how many versions to list")) -> dict[str, Any]:
        current, history = await service.get(tenant, user_id, versions)
        return {**current.as_json(), "versions": [p.as_json() for p in history]}

    @router.put("/{user_id}", summary="Upsert one user's profile (the next version)")
    async def put(user_id: str, tenant: str = Depends(tenant_of), body: ProfileIn = Body(...)) -> dict[str, Any]:
        return (await service.put(tenant, user_id, body.properties, body.replace)).as_json()

    @router.delete("/{user_id}", status_code=204, summary="Delete a user's profile (its versions are kept)")
    async def delete(user_id: str, tenant: str = Depends(tenant_of)) -> Response:
        await service.delete(tenant, user_id)
        return Response(status_code=204)

    return router
