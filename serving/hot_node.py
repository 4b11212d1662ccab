"""The hot node: the one process that owns the embedded chDB folder, shared over Arrow Flight.

Flight carries Arrow both ways, so an insert from the stream job is a zero-copy stream of record
batches and a query result needs no re-encoding. Three verbs map onto the hot-store interface:
``do_get`` (query), ``do_action("command")`` and ``do_put`` (insert with an idempotency token).
"""

from __future__ import annotations

import logging
import threading

import pyarrow.flight as flight

from common.hot_store import HotStore, decode_request

log = logging.getLogger(__name__)


class HotNodeServer(flight.FlightServerBase):
    def __init__(self, store: HotStore, location: str) -> None:
        super().__init__(location)
        self._store = store

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.RecordBatchStream:
        request = decode_request(ticket.ticket)
        table = self._store.query_arrow(request["sql"], request.get("parameters") or {})
        return flight.RecordBatchStream(table)

    def do_put(self, context, descriptor, reader, writer) -> None:  # Flight's signature
        request = decode_request(descriptor.command)
        self._store.insert_arrow(request["table"], reader.read_all(), token=request.get("token"))

    def do_action(self, context: flight.ServerCallContext, action: flight.Action):
        if action.type == "ping":
            return [b"pong"]
        if action.type == "command":
            request = decode_request(action.body.to_pybytes())
            self._store.command(request["sql"], request.get("parameters") or {})
            return [b"ok"]
        raise flight.FlightServerError(f"unknown action {action.type!r}; known: ping, command")

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [("ping", "liveness"), ("command", "run a statement that returns no rows")]


def start_hot_node(store: HotStore, url: str) -> HotNodeServer:
    """Serve ``store`` at ``url`` (``grpc://host:port``) on a background thread."""
    server = HotNodeServer(store, url)
    threading.Thread(target=server.serve, name="hot-node", daemon=True).start()
    log.info("hot node serving at %s", url)
    return server
