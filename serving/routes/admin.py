"""Admin endpoints: tenants and their API keys (admin key only).

A new key is returned once, in the answer that creates it; afterwards only its prefix is ever shown.
Changes made here take effect at once on this API process and within ``auth_cache_seconds`` on others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from serving.tenancy.auth import ApiKeyAuth


class NewTenant(BaseModel):
    id: str = Field(description="1-64 letters, digits, '_', '.' or '-'; the `tenant` of its events",
                    examples=["acme"])
    name: str = Field("", description="display name (default: the id)")


class NewKey(BaseModel):
    role: str = Field("tenant", description="`tenant`: bound to this tenant; `admin`: manages tenants, any tenant")
    rate_per_second: float | None = Field(None, gt=0, description="sustained requests/s (default from settings)")
    burst: int | None = Field(None, ge=1, description="bucket size: requests allowed at once (default from settings)")


def admin_router(auth: ApiKeyAuth) -> APIRouter:
    """The directory decides (``DirectoryError`` with its status, ``HotStoreError``: ``serving.errors``)."""
    router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(auth.admin_dependency)])
    directory, settings = auth.directory, auth.settings

    async def changed(fn: Callable[[], dict[str, Any]], status: int = 200) -> JSONResponse:
        """A change of the key table, applied off the event loop; this process sees it at once."""
        result = await run_in_threadpool(fn)
        auth.invalidate()
        return JSONResponse(status_code=status, content=result)

    @router.post("/tenants", status_code=201, summary="Create a tenant")
    async def create_tenant(tenant: NewTenant = Body(...)) -> Any:
        return await changed(lambda: directory.create_tenant(tenant.id, tenant.name).as_dict(), status=201)

    @router.get("/tenants", summary="List tenants")
    async def list_tenants() -> Any:
        return {"tenants": [t.as_dict() for t in await run_in_threadpool(directory.tenants)]}

    @router.delete("/tenants/{tenant}", summary="Disable a tenant: its keys stop working, its data is kept")
    async def disable_tenant(tenant: str) -> Any:
        return await changed(lambda: directory.set_disabled(tenant, True).as_dict())

    @router.post("/tenants/{tenant}/keys", status_code=201,
                 summary="Issue an API key; the key is in this answer only, store it now")
    async def create_key(tenant: str, key: NewKey | None = Body(None)) -> Any:
        key = key or NewKey()
        rate = key.rate_per_second if key.rate_per_second is not None else settings.rate_limit_per_second
        burst = key.burst if key.burst is not None else settings.rate_limit_burst

        def issue() -> dict[str, Any]:
            clear, record = directory.issue_key(tenant, key.role, rate, burst)
            return {"key": clear, **record.as_dict()}

        return await changed(issue, status=201)

    @router.get("/tenants/{tenant}/keys", summary="List a tenant's keys (prefixes only)")
    async def list_keys(tenant: str) -> Any:
        def keys() -> dict[str, Any]:
            directory.tenant(tenant)  # 404 for an unknown tenant rather than an empty list
            return {"keys": [k.as_dict() for k in directory.api_keys() if k.tenant == tenant]}

        return await run_in_threadpool(keys)

    @router.delete("/keys/{prefix}", summary="Revoke a key by its prefix")
    async def revoke_key(prefix: str) -> Any:
        return await changed(lambda: directory.revoke(prefix).as_dict())

    return router
