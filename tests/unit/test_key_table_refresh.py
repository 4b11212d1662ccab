"""Each API process's copy of the key table: reloaded behind the requests, kept while the hot tier is away.

An API worker must go on authenticating while the hot node restarts, and no request may wait for the
periodic reload; but a change made through this process (``invalidate``) applies at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from common.settings import Settings
from serving.tenancy import auth as auth_module
from serving.tenancy.auth import ApiKeyAuth, AuthError
from serving.tenancy.rate_limit import Decision
from serving.tenancy.tenants import ApiKey, Tenant, hash_key

NOW = datetime(2026, 11, 26, tzinfo=UTC)


class Directory:
    """The key table as the hot tier would answer it; ``down`` makes every read fail like an unreachable node."""

    def __init__(self) -> None:
        self.revoked: set[str] = set()
        self.down = False
        self.reads = 0

    def api_keys(self) -> list[ApiKey]:
        self.reads += 1
        if self.down:
            raise ConnectionError("the hot node is not reachable")
        return [ApiKey(hash_key(key), key[:8], "acme", "tenant", 1000.0, 1000, NOW, key in self.revoked)
                for key in ("key-one", "key-two")]

    def tenants(self) -> list[Tenant]:
        return [Tenant("acme", "Acme", NOW, False)]


class OpenLimiter:
    async def take(self, *args: Any, **kwargs: Any) -> Decision:
        return Decision(True)


def _auth(directory: Directory, cache_s: float) -> ApiKeyAuth:
    settings = Settings(auth_cache_seconds=cache_s)
    limiter: Any = OpenLimiter()
    directory_: Any = directory
    return ApiKeyAuth(settings, directory_, limiter, {})


async def _settle() -> None:
    for _ in range(20):  # the background reload runs in the thread pool: let it finish
        await asyncio.sleep(0.01)


def test_a_reload_never_holds_a_request_and_a_revocation_applies_after_it() -> None:
    directory = Directory()
    auth = _auth(directory, cache_s=0.0)  # every request finds the copy expired

    async def scenario() -> None:
        assert (await auth.authenticate("key-one", None)).tenant == "acme"  # first load: waited for
        directory.revoked.add("key-one")
        # the copy answers at once (the key still works for this request), while one reload starts behind it
        assert (await auth.authenticate("key-one", None)).tenant == "acme"
        await _settle()
        with pytest.raises(AuthError) as refused:
            await auth.authenticate("key-one", None)
        assert refused.value.status == 401
        assert (await auth.authenticate("key-two", None)).tenant == "acme"

    asyncio.run(scenario())


def test_while_the_hot_tier_is_unreachable_the_last_copy_answers_and_reloads_are_spaced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    directory = Directory()
    auth = _auth(directory, cache_s=0.0)
    monkeypatch.setattr(auth_module, "RELOAD_RETRY_SECONDS", 60.0)

    async def scenario() -> None:
        await auth.authenticate("key-one", None)
        directory.down = True
        reads = directory.reads
        for _ in range(200):
            assert (await auth.authenticate("key-two", None)).tenant == "acme"
            await asyncio.sleep(0)
        await _settle()
        assert directory.reads - reads == 1  # one failed reload, then none until the retry time
        with pytest.raises(AuthError) as refused:  # an unknown key stays unknown
            await auth.authenticate("made-up", None)
        assert refused.value.status == 401

    asyncio.run(scenario())


def test_a_change_made_through_this_process_applies_to_the_next_request() -> None:
    directory = Directory()
    auth = _auth(directory, cache_s=3600.0)

    async def scenario() -> None:
        await auth.authenticate("key-one", None)
        directory.revoked.add("key-one")
        auth.invalidate()  # what the admin routes call after a change
        with pytest.raises(AuthError):
            await auth.authenticate("key-one", None)

    asyncio.run(scenario())


def test_without_any_copy_an_unreachable_hot_tier_answers_503_and_is_not_asked_again_at_once() -> None:
    directory = Directory()
    directory.down = True
    auth = _auth(directory, cache_s=5.0)

    async def scenario() -> None:
        for _ in range(5):
            with pytest.raises(AuthError) as refused:
                await auth.authenticate("key-one", None)
            assert refused.value.status == 503
        assert directory.reads == 1

    asyncio.run(scenario())


def test_a_change_made_while_a_reload_reads_the_table_is_read_again() -> None:
    directory = Directory()
    auth = _auth(directory, cache_s=0.0)
    read = directory.api_keys

    def read_then_change() -> list[ApiKey]:
        keys = read()  # the table as it was ...
        directory.revoked.add("key-one")  # ... and a revocation through this process while that read ran
        auth.invalidate()
        return keys

    async def scenario() -> None:
        await auth.authenticate("key-two", None)
        directory.api_keys = read_then_change  # type: ignore[method-assign]
        await auth.authenticate("key-two", None)  # starts the background reload that races the change
        await _settle()
        directory.api_keys = read  # type: ignore[method-assign]
        with pytest.raises(AuthError) as refused:
            await auth.authenticate("key-one", None)
        assert refused.value.status == 401

    asyncio.run(scenario())


class GrowingDirectory(Directory):
    """A key table another process adds keys to (``lakehouse tenants``, another API worker)."""

    def __init__(self) -> None:
        super().__init__()
        self.keys = ["key-one"]

    def api_keys(self) -> list[ApiKey]:
        self.reads += 1
        return [ApiKey(hash_key(key), key[:8], "acme", "tenant", 1000.0, 1000, NOW, False) for key in self.keys]


def test_a_key_created_elsewhere_works_once_the_copy_is_due_and_made_up_keys_cost_no_reload() -> None:
    directory = GrowingDirectory()

    async def scenario(auth: ApiKeyAuth, due: bool) -> None:
        assert (await auth.authenticate("key-one", None)).tenant == "acme"
        directory.keys.append("key-new")
        reads = directory.reads
        if due:  # the copy is as old as the cache allows: the unknown key waits for one reload and is let in
            assert (await auth.authenticate("key-new", None)).tenant == "acme"
            assert directory.reads == reads + 1
            assert await auth.refusal("key-new", None) is None
        else:  # a younger copy answers as it is: a made-up key is refused without reading the store
            for _ in range(5):
                with pytest.raises(AuthError) as refused:
                    await auth.authenticate("key-new", None)
                assert refused.value.status == 401
            assert directory.reads == reads

    asyncio.run(scenario(_auth(directory, cache_s=0.0), due=True))
    directory.keys.remove("key-new")
    asyncio.run(scenario(_auth(directory, cache_s=3600.0), due=False))
