"""The hot node over TLS (``grpc+tls://``): a client that trusts its certificate gets answers, a client that does
not, or that speaks plain gRPC, gets nothing; the token is still required inside TLS. Real chDB, a certificate
made by the openssl command line for this test."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.hot_store import FlightHotStore, HotStore, HotStoreError, hot_node_tls
from common.settings import Settings
from serving.hot_node import HotNodeServer
from tests.component.conftest import closed_port

TOKEN = "tls-test-token"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "hot-node.pem", folder / "hot-node.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def tls_node(hot: HotStore, certificate: tuple[Path, Path]) -> Iterator[str]:
    cert, key = certificate
    port = closed_port()
    settings = Settings(hot_node_url=f"grpc+tls://127.0.0.1:{port}", hot_node_tls_cert=str(cert),
                        hot_node_tls_key=str(key))
    server = HotNodeServer(hot, settings.hot_node_url, TOKEN, tls=hot_node_tls(settings))
    threading.Thread(target=server.serve, daemon=True).start()
    yield settings.hot_node_url
    server.shutdown()


def test_a_client_trusting_the_certificate_is_answered_over_tls(tls_node: str, certificate: tuple[Path, Path],
                                                                tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, hot_node_url=tls_node, hot_node_token=TOKEN,
                        hot_node_tls_ca=str(certificate[0]))
    client = FlightHotStore.for_settings(settings, timeout_s=10)
    assert client.query_arrow("SELECT 41 + 1 AS n").to_pylist() == [{"n": 42}]
    client.close()


def test_untrusted_plain_or_tokenless_clients_get_nothing(tls_node: str, certificate: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    untrusted = FlightHotStore(tls_node, timeout_s=5, token=TOKEN)  # the system's roots do not know this cert
    plain = FlightHotStore(tls_node.replace("grpc+tls://", "grpc://"), timeout_s=5, token=TOKEN)
    tokenless = FlightHotStore(tls_node, timeout_s=5, tls_root_certs=certificate[0].read_bytes())
    for client in (untrusted, plain, tokenless):
        with pytest.raises(HotStoreError):
            client.query_arrow("SELECT 1 AS n")
        client.close()


def test_tls_settings_that_disagree_with_the_url_are_refused_with_the_fix(certificate: tuple[Path, Path]) -> None:
    cert, key = (str(p) for p in certificate)
    with pytest.raises(HotStoreError, match="grpc\\+tls://"):
        hot_node_tls(Settings(hot_node_url="grpc://127.0.0.1:1", hot_node_tls_cert=cert, hot_node_tls_key=key))
    with pytest.raises(HotStoreError, match="LAKEHOUSE_HOT_NODE_TLS_CERT"):
        hot_node_tls(Settings(hot_node_url="grpc+tls://127.0.0.1:1"))
    with pytest.raises(HotStoreError, match="both"):
        hot_node_tls(Settings(hot_node_url="grpc+tls://127.0.0.1:1", hot_node_tls_cert=cert))
    assert hot_node_tls(Settings(hot_node_url="grpc://127.0.0.1:1")) is None
