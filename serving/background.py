"""The API process's background loops (alert evaluation, restated hours, the hot tier's write mark) end the same way."""

from __future__ import annotations

import asyncio
import contextlib


async def cancelled(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (None: nothing started) and wait until it has ended, so a stopping app leaves no loop behind."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
