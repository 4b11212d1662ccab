"""The hot-store interface: the only way any stage talks to the ClickHouse hot tier.

Embedded chDB allows one process per data folder, so in embedded mode exactly one process (the hot
node, i.e. the serving process) opens it and every other process goes through the hot node over
Arrow Flight. Both implementations speak Arrow, so callers never know which one they hold.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
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


def _insert_settings(token: str | None) -> dict[str, Any]:
    if token is None:
        return {}
    return {"insert_deduplication_token": token, "deduplicate_blocks_in_dependent_materialized_views": 1}


class ClickHouseHotStore:
    """clickhouse-connect client to a ClickHouse server (``http://``) or embedded chDB (``chdb://``).

    chDB runs in-process and is not safe for concurrent calls, so calls are serialised by a lock;
    a ClickHouse server handles concurrency itself but a clickhouse-connect client must not run two
    queries on one session at once, so the lock is kept there too (the API uses one store per process).
    """

    def __init__(self, dsn: str, *, read_only: bool = False, lock: threading.Lock | None = None) -> None:
        import clickhouse_connect

        self.dsn = dsn
        # a read-only client is its own session pinned to readonly (chDB keeps a query's settings in the
        # session, so they cannot be switched per query on a shared client); it refuses writes, DDL and
        # table functions such as file() and url()
        settings = {"readonly": 1 if dsn.startswith("chdb://") else 2} if read_only else {}
        try:
            self._client = clickhouse_connect.get_client(dsn=dsn, settings=settings)
        except Exception as exc:  # re-raised with the fix
            hint = (
                "another process (the hot node?) already owns this chDB folder: reach it through the hot node "
                "(LAKEHOUSE_HOT_STORE_MODE=remote) or stop that process"
                if dsn.startswith("chdb://")
                else "check LAKEHOUSE_CLICKHOUSE_DSN and that the ClickHouse server is up"
            )
            raise HotStoreError(f"cannot open ClickHouse at {dsn}: {exc} — {hint}") from exc
        self._lock = lock or threading.Lock()

    def read_only(self) -> ClickHouseHotStore:
        """A second client on the same hot tier that can only read (same lock: chDB is one engine)."""
        return ClickHouseHotStore(self.dsn, read_only=True, lock=self._lock)

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        with self._lock:
            return self._client.query_arrow(sql, parameters=parameters or {})

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._client.command(sql, parameters=parameters or {})

    def insert_arrow(self, table: str, data: pa.Table, token: str | None = None) -> None:
        if data.num_rows == 0:
            return
        with self._lock:
            self._client.insert_arrow(table, data, settings=_insert_settings(token))

    def close(self) -> None:
        with self._lock:
            self._client.close()


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


class FlightHotStore:
    """Client of the hot node (``serving.hot_node``) over Arrow Flight; every call carries the token."""

    def __init__(self, url: str, timeout_s: float = 60.0, token: str | Callable[[], str] = "") -> None:
        self.url = url
        self._client = flight.FlightClient(url)
        self._timeout = timeout_s
        self._token = token

    @classmethod
    def for_settings(cls, settings: Settings, timeout_s: float = 60.0) -> FlightHotStore:
        """The hot node of ``settings``, authenticated with its token (read when a call needs it, so a client
        made before the hot node first started still finds the token)."""
        return cls(settings.hot_node_url, timeout_s, token=lambda: client_hot_node_token(settings))

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

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        ticket = flight.Ticket(encode_request({"sql": sql, "parameters": parameters or {}}))
        try:
            return self._client.do_get(ticket, options=self._options).read_all()
        except flight.FlightError as exc:
            raise self._fail(exc) from exc

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        body = encode_request({"sql": sql, "parameters": parameters or {}})
        try:
            list(self._client.do_action(flight.Action("command", body), options=self._options))
        except flight.FlightError as exc:
            raise self._fail(exc) from exc

    def insert_arrow(self, table: str, data: pa.Table, token: str | None = None) -> None:
        if data.num_rows == 0:
            return
        descriptor = flight.FlightDescriptor.for_command(encode_request({"table": table, "token": token}))
        try:
            writer, _ = self._client.do_put(descriptor, data.schema, options=self._options)
            writer.write_table(data)
            writer.close()
        except flight.FlightError as exc:
            raise self._fail(exc) from exc

    def ping(self) -> bool:
        try:
            list(self._client.do_action(flight.Action("ping", b""), options=self._call_options(2)))
            return True
        except flight.FlightError:
            return False

    def close(self) -> None:
        self._client.close()


def open_hot_store(settings: Settings, *, is_hot_node: bool = False) -> HotStore:
    """The hot store this process should use, following ``settings.hot_store_mode``."""
    mode = settings.hot_store_mode
    if mode not in {"auto", "direct", "remote"}:
        raise HotStoreError(f"LAKEHOUSE_HOT_STORE_MODE={mode!r} is not one of auto, direct, remote")
    if mode == "remote" or (mode == "auto" and settings.embedded_clickhouse and not is_hot_node):
        return FlightHotStore.for_settings(settings)
    return ClickHouseHotStore(settings.effective_clickhouse_dsn)
