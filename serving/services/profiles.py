"""User profiles' service: upserts (one, many, or a CSV/Parquet file), reads and deletes off the event loop.

Errors are the domain's: ``ProfileError`` (a profile or file that cannot be accepted, 400) and
``ProfileNotFound`` (404), mapped by ``serving.errors``. Changing profiles changes the answers of questions
that use them (funnels and retention broken down or filtered by ``profile.<property>``); their cached answers
are dropped for the tenant, so the next question joins the new profiles.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from serving.analytics.profiles import (
    Profile,
    ProfileError,
    ProfileStore,
    checked_properties,
    checked_user,
    rows_from_file,
)
from serving.cache import QueryCache

log = logging.getLogger(__name__)
EVER = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
MAX_BATCH = 10_000
FILE_KINDS = ("csv", "parquet")


class ProfileService:
    def __init__(self, store: ProfileStore, cache: QueryCache) -> None:
        self._store = store
        self._cache = cache

    async def _changed(self, tenant: str) -> None:
        """Drop the tenant's cached answers (Redis down: nothing is cached beyond the short TTLs anyway)."""
        try:
            await self._cache.drop_ranges([(tenant, EVER[0], EVER[1])])
        except RedisError as exc:
            log.warning("profiles of %s changed but the cache could not be cleared (%s); answers are at most "
                        "one TTL old", tenant, exc)

    async def put(self, tenant: str, user_id: str, properties: Mapping[str, Any], replace: bool) -> Profile:
        change = (checked_user(user_id), checked_properties(properties))
        saved = await run_in_threadpool(lambda: self._store.upsert(tenant, [change], "api", replace=replace))
        await self._changed(tenant)
        return saved[0]

    async def put_many(self, tenant: str, profiles: list[Mapping[str, Any]], replace: bool) -> int:
        if len(profiles) > MAX_BATCH:
            raise ProfileError(f"at most {MAX_BATCH:,} profiles per request; POST /v1/profiles/import takes files")
        changes = []
        for i, item in enumerate(profiles):
            try:
                changes.append((checked_user(item.get("user_id")), checked_properties(item.get("properties") or {})))
            except ProfileError as exc:
                raise ProfileError(f"profile {i + 1}: {exc}") from None
        saved = await run_in_threadpool(lambda: self._store.upsert(tenant, changes, "api", replace=replace))
        await self._changed(tenant)
        return len(saved)

    async def load(self, tenant: str, data: bytes, kind: str, replace: bool) -> int:
        if kind not in FILE_KINDS:
            raise ProfileError(f"format must be one of {', '.join(FILE_KINDS)}, got {kind!r}")
        rows = await run_in_threadpool(rows_from_file, data, kind)
        saved = await run_in_threadpool(lambda: self._store.upsert(tenant, rows, kind, replace=replace))
        await self._changed(tenant)
        return len(saved)

    async def get(self, tenant: str, user_id: str, versions: int) -> tuple[Profile, list[Profile]]:
        return await run_in_threadpool(self._store.get, tenant, user_id, versions)

    async def delete(self, tenant: str, user_id: str) -> None:
        await run_in_threadpool(self._store.delete, tenant, user_id)
        await self._changed(tenant)
