"""The hot-store interface: the only way any stage talks to the ClickHouse hot tier.

Embedded chDB allows one process per data folder, so in embedded mode exactly one process (the hot
node, i.e. the serving process) opens it and every other process goes through the hot node over
Arrow Flight. Both implementations speak Arrow, so callers never know which one they hold.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.flight as flight

from common.local_secret import read_or_create_secret
from common.settings import Settings


class HotStoreError(RuntimeError):
    """A hot-store call failed; the message says what to do next.

    ``kind`` tells a writer whether to wait and retry: ``unreachable`` (the hot node or server is
    down or timed out: retrying is right, it comes back), ``permanent`` (the store answered and the
    request can never succeed as it is — wrong table, column or type, unparsable data, no permission:
    retrying only hides the fault) or ``transient`` (anything else the store answered: worth a few
    retries, not an endless loop).
    """

    def __init__(self, message: str, kind: str = "transient") -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def permanent(self) -> bool:
        return self.kind == "permanent"


# ClickHouse error names (they appear in every DB::Exception message) and Arrow error markers that mean the
# request itself is wrong: the same insert fails the same way however often it is retried.
PERMANENT_ERROR_MARKERS = (
    "TYPE_MISMATCH", "UNKNOWN_TABLE", "UNKNOWN_DATABASE", "NO_SUCH_COLUMN_IN_TABLE", "THERE_IS_NO_COLUMN",
    "ILLEGAL_TYPE_OF_ARGUMENT", "ILLEGAL_COLUMN", "CANNOT_CONVERT_TYPE", "NUMBER_OF_COLUMNS_DOESNT_MATCH",
    "INCORRECT_NUMBER_OF_COLUMNS", "SYNTAX_ERROR", "UNKNOWN_IDENTIFIER", "CANNOT_PARSE", "INCORRECT_DATA",
    "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE", "TOO_LARGE_STRING_SIZE", "NOT_IMPLEMENTED", "UNKNOWN_TYPE",
    "ArrowInvalid", "ArrowTypeError", "ArrowNotImplementedError",
)


def error_kind(message: str) -> str:
    """``permanent`` when the store's answer names an error no retry can fix, else ``transient``."""
    return "permanent" if any(marker in message for marker in PERMANENT_ERROR_MARKERS) else "transient"


class HotStore(Protocol):
    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table: ...

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None: ...

    def insert_arrow(self, table: str, data: pa.Table, token: str | None = None) -> None:
        """Insert ``data``; a repeated ``token`` is a replay and changes nothing (exactly-once)."""
        ...

    def close(self) -> None: ...


Statement = tuple[str, dict[str, Any]]  # a command's SQL and its parameters


def run_commands(store: HotStore, statements: Sequence[Statement]) -> None:
    """Run ``statements`` in order, stopping at the first that fails. Through the hot node it is one call (its
    ``commands`` action), so a writer that follows each insert with a few small statements (the stream's marks)
    pays one round trip instead of one per statement; any other store runs them one by one."""
    if not statements:
        return
    several = getattr(store, "commands", None)
    if several is not None:
        several(statements)
        return
    for sql, parameters in statements:
        store.command(sql, parameters)


def _insert_settings(token: str | None) -> dict[str, Any]:
    if token is None:
        return {}
    return {"insert_deduplication_token": token, "deduplicate_blocks_in_dependent_materialized_views": 1}


# Settings of every session. ClickHouse remembers each aggregation's hash-table size, to size the next one with the
# same key in advance; the key covers the query's constants, so each question over a range that moves with the clock
# adds an entry. In chDB that was ~250 bytes of the hot node's memory per aggregation, still growing after 30,000
# (docs/benchmarks.md, "the hot node's memory"). The hot tier's aggregations are small: they gain nothing from it.
SESSION_SETTINGS: dict[str, Any] = {"collect_hash_table_stats_during_aggregation": 0}


class _Session:
    """One clickhouse-connect client (one ClickHouse session) and the lock that keeps it to one call at a time:
    a client must not run two statements at once, and chDB keeps a query's settings in its session."""

    def __init__(self, dsn: str, settings: dict[str, Any]) -> None:
        import clickhouse_connect

        try:
            self.client = clickhouse_connect.get_client(dsn=dsn, settings=settings)
        except Exception as exc:  # re-raised with the fix
            hint = (
                "another process (the hot node?) already owns this chDB folder: reach it through the hot node "
                "(LAKEHOUSE_HOT_STORE_MODE=remote) or stop that process"
                if dsn.startswith("chdb://")
                else "check LAKEHOUSE_CLICKHOUSE_DSN and that the ClickHouse server is up"
            )
            raise HotStoreError(f"cannot open ClickHouse at {dsn}: {exc} — {hint}") from exc
        self.lock = threading.Lock()


class _WriteCounts:
    """How many statements this process ran against each watched table of an embedded chDB folder.

    chDB allows one process per data folder, so every write into it passes through this process's writer sessions
    (the hot node runs its clients' commands and inserts on them): a counter bumped after each statement naming a
    table changes whenever the table may have changed, and a reader can keep what it derived from the table until the
    counter moves (``common.day_rollups`` keeps its builds' marks so). A ClickHouse server has other writers: no
    counter there (``None``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}  # (folder DSN, table) -> statements since first watched

    def bump(self, dsn: str, sql_or_table: str) -> None:
        """After a statement (or an insert into a table): the watched tables it names move on."""
        with self._lock:
            for key in self._counts:
                if key[0] == dsn and key[1] in sql_or_table:
                    self._counts[key] += 1

    def count(self, dsn: str, table: str) -> int:
        """The table's counter, watched from now on: a statement finishing after this call bumps it."""
        with self._lock:
            return self._counts.setdefault((dsn, table), 0)


_WRITES = _WriteCounts()


class ClickHouseHotStore:
    """clickhouse-connect client to a ClickHouse server (``http://``) or embedded chDB (``chdb://``).

    Writes (inserts, commands) have a session of their own and queries share a pool of ``query_sessions``
    sessions, so the stream's inserts never queue behind a tenant's slow query, and a few queries run at
    once. chDB runs them concurrently in one engine (one process per data folder, any number of sessions);
    a ClickHouse server does so anyway. Fairness between tenants is the API's business
    (``serving.tenancy.query_slots``): it never lets one tenant hold every query session.
    """

    def __init__(self, dsn: str, *, read_only: bool = False, query_sessions: int = 1) -> None:
        self.dsn = dsn
        self.query_sessions = max(1, query_sessions)
        # a read-only store's sessions are pinned to readonly (chDB keeps a query's settings in the session, so
        # they cannot be switched per query on a shared client): no writes, no DDL, no file()/url() table functions
        settings = {**SESSION_SETTINGS, **({"readonly": 1 if dsn.startswith("chdb://") else 2} if read_only else {})}
        self._writer = None if read_only else _Session(dsn, settings)
        self._pool: queue.LifoQueue[_Session] = queue.LifoQueue()
        self._sessions = [_Session(dsn, settings) for _ in range(self.query_sessions)]
        for session in self._sessions:
            self._pool.put(session)

    def read_only(self, query_sessions: int | None = None) -> ClickHouseHotStore:
        """Another store on the same hot tier that can only read, with sessions of its own."""
        return ClickHouseHotStore(self.dsn, read_only=True, query_sessions=query_sessions or self.query_sessions)

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        session = self._pool.get()  # waits while every query session is busy
        try:
            with session.lock:
                return session.client.query_arrow(sql, parameters=parameters or {})
        finally:
            self._pool.put(session)

    def _writing(self, what: str) -> _Session:
        if self._writer is None:
            raise HotStoreError(f"{what} on a read-only hot store: use the hot node's writer token")
        return self._writer

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        writer = self._writing("a command")
        try:
            with writer.lock:
                writer.client.command(sql, parameters=parameters or {})
        finally:  # after the statement (failed too: it may have written part of it)
            _WRITES.bump(self._folder, sql)

    def commands(self, statements: Sequence[Statement]) -> None:
        """``command`` for each statement, in order, without another writer's call between them."""
        writer = self._writing("a command")
        with writer.lock:
            for sql, parameters in statements:
                try:
                    writer.client.command(sql, parameters=parameters or {})
                finally:  # as ``command``: each statement moves the counters of the tables it names
                    _WRITES.bump(self._folder, sql)

    def insert_arrow(self, table: str, data: pa.Table, token: str | None = None) -> None:
        if data.num_rows == 0:
            return
        writer = self._writing("an insert")
        try:
            with writer.lock:
                writer.client.insert_arrow(table, data, settings=_insert_settings(token))
        finally:
            _WRITES.bump(self._folder, table)

    @property
    def _folder(self) -> str:
        return self.dsn.rstrip("/")

    def write_count(self, table: str) -> int | None:
        """A counter that moves after every write into ``table`` (see ``_WriteCounts``; read it before reading the
        table); None on a ClickHouse server, whose other clients write without this process knowing."""
        return _WRITES.count(self._folder, table) if self.dsn.startswith("chdb://") else None

    def close(self) -> None:
        for session in [*self._sessions, *([self._writer] if self._writer else [])]:
            with session.lock:
                session.client.close()


def write_count(store: HotStore, table: str) -> int | None:
    """``store``'s write counter of ``table`` when it can tell (an embedded chDB store, the hot node's clients), else
    None (a ClickHouse server, wrappers without one): then nothing derived from the table may be kept between
    reads."""
    counter = getattr(store, "write_count", None)
    return None if counter is None else counter(table)


def encode_request(payload: dict[str, Any]) -> bytes:
    """JSON with datetimes tagged, so typed query parameters survive the trip to the hot node."""

    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return {"$datetime": value.isoformat()}
        raise TypeError(f"cannot send a {type(value).__name__} as a query parameter")

    return json.dumps(payload, default=default).encode()


def decode_request(data: bytes) -> dict[str, Any]:
    def hook(obj: dict[str, Any]) -> Any:
        return datetime.fromisoformat(obj["$datetime"]) if set(obj) == {"$datetime"} else obj

    return json.loads(data, object_hook=hook)


def hot_node_token_file(settings: Settings) -> Path:
    return settings.home / "run" / "hot-node.token"


def ensure_hot_node_token(settings: Settings) -> str:
    """The hot node's token: ``hot_node_token`` when set, else one generated once and kept (mode 0600) in
    ``<home>/run/hot-node.token``, where local processes of the same home (stream, Dagster, CLI) read it."""
    if settings.hot_node_token:
        return settings.hot_node_token
    return read_or_create_secret(hot_node_token_file(settings))


def client_hot_node_token(settings: Settings) -> str:
    """The token a client sends: ``hot_node_token``, else the local hot node's token file (empty if none yet)."""
    if settings.hot_node_token:
        return settings.hot_node_token
    try:
        return hot_node_token_file(settings).read_text().strip()
    except OSError:
        return ""


def _read_pem(path: str, setting: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise HotStoreError(f"cannot read {setting}={path}: {exc} — point it at a readable PEM file") from exc


def hot_node_tls(settings: Settings) -> tuple[bytes, bytes] | None:
    """The hot node's (certificate, key) when it serves TLS; checks that the URL's scheme agrees."""
    cert = _read_pem(settings.hot_node_tls_cert, "LAKEHOUSE_HOT_NODE_TLS_CERT")
    key = _read_pem(settings.hot_node_tls_key, "LAKEHOUSE_HOT_NODE_TLS_KEY")
    tls_url = settings.hot_node_url.startswith("grpc+tls://")
    if (cert is None) != (key is None):
        raise HotStoreError("set both LAKEHOUSE_HOT_NODE_TLS_CERT and LAKEHOUSE_HOT_NODE_TLS_KEY, or neither")
    if cert is not None and not tls_url:
        raise HotStoreError(f"the hot node has a TLS certificate but LAKEHOUSE_HOT_NODE_URL={settings.hot_node_url} "
                            "is plain: use grpc+tls://host:port")
    if cert is None and tls_url:
        raise HotStoreError("LAKEHOUSE_HOT_NODE_URL is grpc+tls:// but the hot node has no certificate: set "
                            "LAKEHOUSE_HOT_NODE_TLS_CERT and LAKEHOUSE_HOT_NODE_TLS_KEY")
    return None if cert is None or key is None else (cert, key)


class FlightHotStore:
    """Client of the hot node (``serving.hot_node``) over Arrow Flight; every call carries the token."""

    def __init__(self, url: str, timeout_s: float = 60.0, token: str | Callable[[], str] = "",
                 tls_root_certs: bytes | None = None) -> None:
        self.url = url
        self._tls_root_certs = tls_root_certs
        self._client = self._connect()
        self._timeout = timeout_s
        self._token = token

    def _connect(self) -> flight.FlightClient:
        # a grpc+tls:// URL verifies the hot node's certificate: against tls_root_certs, else the system's roots
        if self._tls_root_certs:
            return flight.FlightClient(self.url, tls_root_certs=self._tls_root_certs)
        return flight.FlightClient(self.url)

    def _reconnect(self) -> None:
        """A new channel after the hot node could not be reached: gRPC's own channel would wait out a growing
        back-off (up to minutes) before it tried again, long after a restarted hot node is back. The old client
        is left to the garbage collector, as other threads may still be in a call on it."""
        self._client = self._connect()

    @classmethod
    def for_settings(cls, settings: Settings, timeout_s: float = 60.0) -> FlightHotStore:
        """The hot node of ``settings``, authenticated with its token (read when a call needs it, so a client
        made before the hot node first started still finds the token)."""
        return cls(settings.hot_node_url, timeout_s, token=lambda: client_hot_node_token(settings),
                   tls_root_certs=_read_pem(settings.hot_node_tls_ca, "LAKEHOUSE_HOT_NODE_TLS_CA"))

    def _call_options(self, timeout_s: float | None = None) -> flight.FlightCallOptions:
        token = self._token() if callable(self._token) else self._token
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        return flight.FlightCallOptions(timeout=timeout_s or self._timeout, headers=headers)

    @property
    def _options(self) -> flight.FlightCallOptions:
        return self._call_options()

    def _fail(self, exc: Exception) -> HotStoreError:
        if isinstance(exc, flight.FlightUnavailableError):
            return HotStoreError(
                f"the hot node is not reachable at {self.url} — start it with `lakehouse serve` "
                "(or `lakehouse stack up`), or set LAKEHOUSE_HOT_NODE_URL", kind="unreachable"
            )
        if isinstance(exc, flight.FlightTimedOutError):
            return HotStoreError(f"hot node at {self.url} did not answer in time: {exc}", kind="unreachable")
        if isinstance(exc, flight.FlightUnauthenticatedError):
            return HotStoreError(
                f"the hot node at {self.url} refused this process's token — set LAKEHOUSE_HOT_NODE_TOKEN to the "
                "hot node's (or share its LAKEHOUSE_HOME, whose run/hot-node.token it reads)", kind="permanent"
            )
        if isinstance(exc, flight.FlightUnauthorizedError):
            return HotStoreError(f"hot node at {self.url} refused the call: {exc}", kind="permanent")
        return HotStoreError(f"hot node at {self.url} failed: {exc}", kind=error_kind(str(exc)))

    def _failed_call(self, exc: Exception) -> HotStoreError:
        """A write that failed: not retried here (the caller decides; inserts carry their idempotency token), but
        the next call gets a new channel when the hot node was unreachable."""
        if isinstance(exc, flight.FlightUnavailableError):
            self._reconnect()
        return self._fail(exc)

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        ticket = flight.Ticket(encode_request({"sql": sql, "parameters": parameters or {}}))
        try:
            return self._client.do_get(ticket, options=self._options).read_all()
        except flight.FlightUnavailableError:
            self._reconnect()  # a query only reads: asked once more, on a new channel
        except flight.FlightError as exc:
            raise self._fail(exc) from exc
        try:
            return self._client.do_get(ticket, options=self._options).read_all()
        except flight.FlightError as exc:
            raise self._fail(exc) from exc

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        body = encode_request({"sql": sql, "parameters": parameters or {}})
        try:
            list(self._client.do_action(flight.Action("command", body), options=self._options))
        except flight.FlightError as exc:
            raise self._failed_call(exc) from exc

    def commands(self, statements: Sequence[Statement]) -> None:
        """The statements in one call: the hot node runs them in order (``run_commands``)."""
        body = encode_request({"statements": [{"sql": sql, "parameters": parameters or {}}
                                              for sql, parameters in statements]})
        try:
            list(self._client.do_action(flight.Action("commands", body), options=self._options))
        except flight.FlightError as exc:
            raise self._failed_call(exc) from exc

    def insert_arrow(self, table: str, data: pa.Table, token: str | None = None) -> None:
        if data.num_rows == 0:
            return
        descriptor = flight.FlightDescriptor.for_command(encode_request({"table": table, "token": token}))
        try:
            writer, _ = self._client.do_put(descriptor, data.schema, options=self._options)
            writer.write_table(data)
            writer.close()
        except flight.FlightError as exc:
            raise self._failed_call(exc) from exc

    @property
    def dsn(self) -> str:
        """The hot node's URL: what keeps apart what is derived from two hot nodes' tables."""
        return self.url

    def write_count(self, table: str) -> int | None:
        """The hot node's write counter of ``table`` with the node's incarnation in it (``serving.hot_node``; one
        round trip): it moves after every write into the table, and differs after a restart. None when the hot node
        has none (a ClickHouse server behind it) or cannot be asked (the caller then keeps nothing)."""
        body = encode_request({"table": table})
        try:
            answer = list(self._client.do_action(flight.Action("write_count", body), options=self._options))
        except flight.FlightError as exc:
            if isinstance(exc, flight.FlightUnavailableError):
                self._reconnect()
            return None
        text = answer[0].body.to_pybytes() if answer else b""
        return int(text) if text else None

    def ping(self) -> bool:
        try:
            list(self._client.do_action(flight.Action("ping", b""), options=self._call_options(2)))
            return True
        except flight.FlightError as exc:
            if isinstance(exc, flight.FlightUnavailableError):
                self._reconnect()
            return False

    def close(self) -> None:
        self._client.close()


def is_remote(store: object) -> bool:
    """Is ``store`` the hot node over Flight, also behind wrappers that keep the store they wrap as ``inner``?
    The hot node runs queries on read-only sessions that refuse per-query settings (``max_execution_time``), so
    its clients bound a query by the Flight call's timeout instead."""
    while hasattr(store, "inner"):
        store = store.inner
    return isinstance(store, FlightHotStore)


def open_hot_store(settings: Settings, *, is_hot_node: bool = False) -> HotStore:
    """The hot store this process should use, following ``settings.hot_store_mode``."""
    mode = settings.hot_store_mode
    if mode not in {"auto", "direct", "remote"}:
        raise HotStoreError(f"LAKEHOUSE_HOT_STORE_MODE={mode!r} is not one of auto, direct, remote")
    if mode == "remote" or (mode == "auto" and settings.embedded_clickhouse and not is_hot_node):
        return FlightHotStore.for_settings(settings)
    return ClickHouseHotStore(settings.effective_clickhouse_dsn, query_sessions=settings.hot_query_sessions)
