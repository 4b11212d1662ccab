"""The hot node serves no call without its token; a reader can only read, and no query can write, run DDL or
reach files and URLs. Against the session's real hot node (the API process owning chDB)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from common.hot_store import FlightHotStore, HotStoreError, hot_node_token_file
from common.settings import Settings
from stack.services import Stack


def test_a_client_without_the_token_is_refused(stack: Stack, settings: Settings) -> None:
    for token in ("", "wrong-token"):
        anonymous = FlightHotStore(settings.hot_node_url, timeout_s=10, token=token)
        with pytest.raises(HotStoreError, match="LAKEHOUSE_HOT_NODE_TOKEN"):
            anonymous.query_arrow("SELECT 1")
        with pytest.raises(HotStoreError, match="LAKEHOUSE_HOT_NODE_TOKEN"):
            anonymous.command("CREATE TABLE IF NOT EXISTS pwned (x UInt8) ENGINE = Memory")
        with pytest.raises(HotStoreError, match="LAKEHOUSE_HOT_NODE_TOKEN"):
            anonymous.insert_arrow("api_keys", pa.table({"x": [1]}))
        assert not anonymous.ping()
        anonymous.close()
    raw = flight.FlightClient(settings.hot_node_url)  # a bare Flight client, no header at all
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(raw.do_action(flight.Action("ping", b"")))
    with pytest.raises(flight.FlightUnauthenticatedError):
        raw.do_get(flight.Ticket(b'{"sql": "SELECT 1"}')).read_all()
    raw.close()
    assert oct(hot_node_token_file(settings).stat().st_mode & 0o777) == "0o600"
    assert FlightHotStore.for_settings(settings).query_arrow("SELECT 1 AS one").to_pylist() == [{"one": 1}]


@pytest.mark.parametrize("sql", [
    "CREATE TABLE pwned (x UInt8) ENGINE = Memory",
    "DROP TABLE IF EXISTS api_keys",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')",
    "INSERT INTO FUNCTION file('/tmp/lakehouse-pwned.csv', 'CSV') SELECT 1",
])
def test_queries_run_read_only_whoever_sends_them(stack: Stack, settings: Settings, sql: str) -> None:
    writer = FlightHotStore.for_settings(settings, timeout_s=10)
    with pytest.raises(HotStoreError, match="readonly|READONLY"):
        writer.query_arrow(sql)
    assert writer.query_arrow("SELECT count() > 0 AS ok FROM system.tables").to_pylist() == [{"ok": True}]


def test_the_reader_token_may_query_but_not_write(stack: Stack, settings: Settings) -> None:
    reader = FlightHotStore(settings.hot_node_url, timeout_s=10, token=settings.hot_node_reader_token)
    assert reader.query_arrow("SELECT 2 AS two").to_pylist() == [{"two": 2}]
    assert reader.ping()
    with pytest.raises(HotStoreError, match="writer token"):
        reader.command("CREATE TABLE IF NOT EXISTS pwned (x UInt8) ENGINE = Memory")
    with pytest.raises(HotStoreError, match="writer token"):
        reader.insert_arrow("api_keys", pa.table({"x": [1]}))
    reader.close()
