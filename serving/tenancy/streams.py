"""How many live streams one API key may hold open at once, whatever the transport.

A stream costs a connection and a snapshot per interval for as long as it stays open, so a key that opens
thousands (a leaking client, or a loop) would hold the process's connections. Each open stream takes a slot
of its key; one over the cap is refused (the caller is told to close one first). One process's count: a
key's streams on other replicas count there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class TooManyStreams(Exception):
    pass


class StreamSlots:
    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._open: dict[str, int] = {}

    def open_for(self, key_id: str) -> int:
        return self._open.get(key_id, 0)

    @contextmanager
    def hold(self, key_id: str) -> Iterator[None]:
        """A slot of ``key_id`` while the block runs; ``TooManyStreams`` if the key holds them all."""
        if self._open.get(key_id, 0) >= self.per_key:
            raise TooManyStreams(f"key {key_id} already has {self.per_key} live streams open (the most allowed, "
                                 "LAKEHOUSE_LIVE_MAX_STREAMS_PER_KEY); close one first")
        self._open[key_id] = self._open.get(key_id, 0) + 1
        try:
            yield
        finally:
            self._open[key_id] -= 1
            if not self._open[key_id]:
                del self._open[key_id]
