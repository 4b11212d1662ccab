"""The hot node: the one process that owns the embedded chDB folder, shared over Arrow Flight.

Flight carries Arrow both ways, so an insert from the stream job is a zero-copy stream of record
batches and a query result needs no re-encoding. Three verbs map onto the hot-store interface:
``do_get`` (query), ``do_action("command")`` (``"commands"``: several in order, one call) and ``do_put``
(insert with an idempotency token). ``do_action("write_count")`` hands out the counter of a table's writes
(``common.hot_store.write_count``, with this process's incarnation in it): every write passes through this
process, so a client that reads the counter first may keep what it derived from the table until it moves, as the
embedded store's own readers do.

The endpoint holds every tenant's data, so no call is served without a token (``Authorization: Bearer``,
compared in constant time, checked by a server middleware before any verb runs):

* the writer token (``hot_node_token``, or the generated one in ``<home>/run/hot-node.token``) may query,
  insert and run commands: the stream job, Dagster runs and the command line hold it;
* the reader token (``hot_node_reader_token``, optional) may only query.

With ``hot_node_tls_cert``/``hot_node_tls_key`` it serves TLS (``grpc+tls://``; clients verify it with
``hot_node_tls_ca``), for a hot node reached across a network; tokens then never travel in clear.

Every query, whoever sends it, runs on a read-only session (ClickHouse ``readonly=1``): writes go through
the insert verb and commands only, and a query cannot run DDL or reach files and URLs (``file()``,
``url()``, ``s3()`` are refused in read-only mode).
"""

from __future__ import annotations

import hmac
import logging
import threading
import uuid
from typing import Any

import pyarrow.flight as flight

from common.hot_store import HotStore, decode_request, run_commands, write_count

log = logging.getLogger(__name__)

WRITER, READER = "writer", "reader"
_MIDDLEWARE = "auth"


class _Caller(flight.ServerMiddleware):
    def __init__(self, role: str) -> None:
        self.role = role


class TokenCheck(flight.ServerMiddlewareFactory):
    """Refuses a call whose bearer token is not one of ``tokens`` (token → role)."""

    def __init__(self, tokens: dict[str, str]) -> None:
        super().__init__()
        self._tokens = [(token.encode(), role) for token, role in tokens.items() if token]
        if not self._tokens:
            raise ValueError("the hot node needs a token (LAKEHOUSE_HOT_NODE_TOKEN or its generated token file)")

    def role_of(self, authorization: str) -> str | None:
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        role = None
        for token, candidate in self._tokens:  # every token compared, in constant time
            if hmac.compare_digest(presented.strip().encode(), token):
                role = candidate
        return role

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[Any]]) -> _Caller:
        values = headers.get("authorization") or [""]
        value = values[0].decode() if isinstance(values[0], bytes) else values[0]
        role = self.role_of(value)
        if role is None:
            raise flight.FlightUnauthenticatedError(
                "the hot node needs its token: send `authorization: Bearer <LAKEHOUSE_HOT_NODE_TOKEN>` "
                "(local processes read it from <home>/run/hot-node.token)")
        return _Caller(role)


def _role(context: flight.ServerCallContext) -> str:
    caller = context.get_middleware(_MIDDLEWARE)
    return caller.role if caller is not None else ""


def _require_writer(context: flight.ServerCallContext, what: str) -> None:
    if _role(context) != WRITER:
        raise flight.FlightUnauthorizedError(f"{what} needs the hot node's writer token; this token may only query")


class HotNodeServer(flight.FlightServerBase):
    def __init__(self, store: HotStore, location: str, token: str, reader_token: str = "",
                 reader: HotStore | None = None, tls: tuple[bytes, bytes] | None = None) -> None:
        # Flight starts listening inside its __init__: a client retrying against a restarting hot node can
        # call before it returns, so the handlers' state is set first.
        self._store = store
        self._reader = reader if reader is not None else _read_only(store)
        # this process's write counters start at 0: a client keeps what it derived under (incarnation, count), so a
        # count seen before a restart is never taken for the same count after it
        self._incarnation = uuid.uuid4().int << 64
        tokens = {reader_token: READER, token: WRITER}  # the writer's wins should both be equal
        super().__init__(location, middleware={_MIDDLEWARE: TokenCheck(tokens)},
                         tls_certificates=[tls] if tls else None)

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.RecordBatchStream:
        request = decode_request(ticket.ticket)
        table = self._reader.query_arrow(request["sql"], request.get("parameters") or {})
        return flight.RecordBatchStream(table)

    def do_put(self, context, descriptor, reader, writer) -> None:  # Flight's signature
        _require_writer(context, "an insert")
        request = decode_request(descriptor.command)
        self._store.insert_arrow(request["table"], reader.read_all(), token=request.get("token"))

    def do_action(self, context: flight.ServerCallContext, action: flight.Action):
        if action.type == "ping":
            return [b"pong"]
        if action.type == "command":
            _require_writer(context, "a command")
            request = decode_request(action.body.to_pybytes())
            self._store.command(request["sql"], request.get("parameters") or {})
            return [b"ok"]
        if action.type == "commands":  # several statements in order, one round trip (the stream's marks)
            _require_writer(context, "a command")
            request = decode_request(action.body.to_pybytes())
            run_commands(self._store, [(s["sql"], s.get("parameters") or {}) for s in request["statements"]])
            return [b"ok"]
        if action.type == "write_count":  # what a client may keep derived from a table (common.hot_store)
            count = write_count(self._store, decode_request(action.body.to_pybytes())["table"])
            return [b"" if count is None else str(self._incarnation | count).encode()]
        raise flight.FlightServerError(
            f"unknown action {action.type!r}; known: ping, command, commands, write_count")

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [("ping", "liveness"), ("command", "run a statement that returns no rows (writer token)"),
                ("commands", "run several such statements in order, stopping at the first that fails (writer token)"),
                ("write_count", "a counter that moves after every write into a table (this node's incarnation in it)")]


def _read_only(store: HotStore) -> HotStore:
    make = getattr(store, "read_only", None)
    if make is None:
        raise TypeError(f"{type(store).__name__} has no read-only view; the hot node serves queries read-only only")
    return make()


def start_hot_node(store: HotStore, url: str, token: str, reader_token: str = "",
                   tls: tuple[bytes, bytes] | None = None) -> HotNodeServer:
    """Serve ``store`` at ``url`` (``grpc://host:port``, or ``grpc+tls://`` with ``tls`` = (certificate, key)
    in PEM) on a background thread."""
    server = HotNodeServer(store, url, token, reader_token, tls=tls)
    threading.Thread(target=server.serve, name="hot-node", daemon=True).start()
    log.info("hot node serving at %s (token required%s)", url, ", TLS" if tls else "")
    return server
