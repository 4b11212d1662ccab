"""A client of the hot node answers again as soon as a restarted hot node is back: its Flight channel, which
failed while the node was away, is replaced instead of waiting out gRPC's reconnect back-off (seconds to
minutes). The API workers depend on it: uncached questions work again right after the hot node restarts."""

from __future__ import annotations

import threading
import time

import pytest

from common.hot_store import FlightHotStore, HotStore, HotStoreError
from serving.hot_node import HotNodeServer
from tests.component.conftest import closed_port

TOKEN = "restart-test-token"


def _serve(hot: HotStore, url: str) -> HotNodeServer:
    server = HotNodeServer(hot, url, TOKEN)
    threading.Thread(target=server.serve, daemon=True).start()
    return server


def test_queries_work_again_at_once_after_the_hot_node_restarts(hot: HotStore) -> None:
    url = f"grpc://127.0.0.1:{closed_port()}"
    server = _serve(hot, url)
    client = FlightHotStore(url, timeout_s=5, token=TOKEN)
    try:
        assert client.query_arrow("SELECT 1 AS n").to_pylist() == [{"n": 1}]
        server.shutdown()
        away_until = time.monotonic() + 8.0  # long enough for a back-off of seconds (3 s measured without the fix)
        while time.monotonic() < away_until:  # callers keep trying: gRPC's channel backs off further each time
            with pytest.raises(HotStoreError) as down:
                client.query_arrow("SELECT 2 AS n")
            assert down.value.kind == "unreachable"
            time.sleep(0.2)
        server = _serve(hot, url)
        started = time.monotonic()
        deadline = started + 5
        while True:  # the new server needs a moment to listen; the client must not need more
            try:
                answer = client.query_arrow("SELECT 3 AS n").to_pylist()
                break
            except HotStoreError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert answer == [{"n": 3}]
        assert time.monotonic() - started < 1.0
    finally:
        server.shutdown()
        client.close()


class _SlowToOpen:
    """A store whose read-only view takes a while to open, as chDB's can on a loaded machine."""

    def __init__(self, store: HotStore) -> None:
        self._store = store

    def read_only(self) -> HotStore:
        time.sleep(0.5)
        return self._store.read_only()


def test_a_client_calling_while_the_hot_node_starts_is_told_unreachable_never_an_internal_error(
        hot: HotStore) -> None:
    """Flight listens from inside its constructor; a caller that got in before the node's own state was set
    was answered an internal error (CI saw "'HotNodeServer' object has no attribute '_reader'" as a 503)."""
    url = f"grpc://127.0.0.1:{closed_port()}"
    client = FlightHotStore(url, timeout_s=5, token=TOKEN)
    kinds: list[str] = []
    answers: list[object] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            try:
                answers.append(client.query_arrow("SELECT 4 AS n").to_pylist())
                return
            except HotStoreError as error:
                kinds.append(error.kind)
                time.sleep(0.01)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    server = HotNodeServer(_SlowToOpen(hot), url, TOKEN)  # type: ignore[arg-type]
    threading.Thread(target=server.serve, daemon=True).start()
    try:
        asker.join(timeout=10)
        assert answers == [[{"n": 4}]]
        assert kinds and set(kinds) == {"unreachable"}
    finally:
        stop.set()
        server.shutdown()
        client.close()
