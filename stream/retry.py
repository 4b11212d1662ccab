"""Waiting for the hot store from the stream's sinks: an unreachable node is waited for, a fault no retry fixes is not.

Shared by the ``hot`` query's writer, the ``landing`` query's dead-letter counts and the progress listener.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from common.hot_store import HotStoreError

TRANSIENT_ATTEMPTS = 8  # about two minutes of backoff for an error the store answered but did not explain


class PermanentHotStoreError(RuntimeError):
    """A hot insert that can never succeed: the batch fails (and with it the stream job) instead of looping."""


def with_retry(action: Callable[[], None], what: str, progress: Callable[[str], None],
               sleep: Callable[[float], None] = time.sleep, wait_at_most: float | None = None) -> None:
    """Wait for the hot store instead of failing the batch: the stream catches up when it returns.

    Only an unreachable store is waited for without end (it comes back; nothing is skipped meanwhile),
    unless ``wait_at_most`` seconds of sleeping bound the wait (then the error is raised as
    ``PermanentHotStoreError``). An error the store answered is retried ``TRANSIENT_ATTEMPTS`` times at
    most, and one that names a fault no retry can fix (wrong table, column or type; ``HotStoreError.kind``)
    not at all: the micro-batch fails, the stream job stops with the reason, and after the fix it replays
    the batch from its checkpoint with the same tokens, so nothing is lost or counted twice.
    """
    delay = 1.0
    attempts = 0
    slept = 0.0
    while True:
        try:
            action()
            return
        except HotStoreError as exc:
            attempts += exc.kind != "unreachable"  # waiting for an unreachable store is not an attempt
            if wait_at_most is not None and slept >= wait_at_most:
                raise PermanentHotStoreError(f"{what}: the hot store was unreachable for {slept:.0f}s: {exc}") from exc
            if exc.permanent or (exc.kind != "unreachable" and attempts >= TRANSIENT_ATTEMPTS):
                why = "can never succeed" if exc.permanent else f"failed {attempts} times"
                raise PermanentHotStoreError(
                    f"{what}: the hot store rejected the insert, which {why}: {exc}. Fix the cause (schema "
                    "migrations of the hot node, the event contract), then restart the stream job: it replays this "
                    "micro-batch from its checkpoint, exactly once."
                ) from exc
            progress(f"{what}: {exc}; retrying in {delay:.0f}s")
            sleep(delay)
            slept += delay
            delay = min(delay * 2, 30.0)
