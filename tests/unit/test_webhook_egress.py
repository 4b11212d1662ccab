"""Alert webhooks reach public addresses only: checked at creation and at every delivery, nothing echoed.

The receiver is a real HTTP server on 127.0.0.1; a refused destination must never see a connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from serving.alerts.rules import AlertError, Rule, parse_condition, validate_rule
from serving.alerts.webhook import WebhookSender
from serving.webhook_guard import EgressPolicy, EgressRefused, non_public_reason, parse_networks


class Receiver:
    """Answers every POST with ``status`` and a secret body; records the Host header of each request."""

    def __init__(self, status: int = 200) -> None:
        self.hosts: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.hosts.append(self.headers["Host"])
                body = b"SECRET internal answer"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Receiver:
    r = Receiver()
    yield r
    r.close()


def send(url: str, policy: EgressPolicy) -> list:
    async def go() -> list:
        sender = WebhookSender(timeout_seconds=2, attempts=2, backoff_seconds=0.01, egress=policy)
        try:
            return await sender.send(url, {"text": "hello"})
        finally:
            await sender.close()
    return asyncio.run(go())


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"), ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"),
    ("100.64.0.1", "not globally routable"), ("240.0.0.1", "reserved"),
    ("::1", "loopback"), ("::", "unspecified"), ("fe80::1", "link-local"), ("fc00::1", "private"),
    ("ff02::1", "multicast"), ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"),
    ("2002:0a00:0001::1", "private"),  # 6to4 wrapping 10.0.0.1
])
def test_non_public_addresses_are_named(address: str, reason: str) -> None:
    assert non_public_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert non_public_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]"])
def test_delivery_to_loopback_is_refused_without_a_connection(receiver: Receiver, host: str) -> None:
    attempts = send(f"http://{host}:{receiver.port}/hook", EgressPolicy())
    assert len(attempts) == 1 and attempts[0].permanent_failure and attempts[0].status is None
    assert "loopback" in attempts[0].error
    assert receiver.hosts == []


@pytest.mark.parametrize("url, reason", [("http://10.0.0.7/hook", "private"),
                                         ("http://169.254.169.254/latest/meta-data/", "link-local"),
                                         ("https://[fd00::5]/hook", "private")])
def test_delivery_to_private_ranges_and_metadata_is_refused(url: str, reason: str) -> None:
    attempts = send(url, EgressPolicy())
    assert len(attempts) == 1 and attempts[0].permanent_failure and reason in attempts[0].error


def test_every_resolved_address_is_checked() -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.0.0.1"]  # one public, one private: refused as a whole
    with pytest.raises(EgressRefused, match="private"):
        asyncio.run(EgressPolicy(resolver=mixed).checked_address("hook.example", 80))


def test_the_connection_goes_to_the_checked_address(receiver: Receiver) -> None:
    """No second lookup between check and connect: the name does not exist in DNS, only in the resolver that
    the guard consulted, so the request can only have reached the receiver through the checked address."""
    lookups: list[str] = []

    async def pinned(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]
    policy = EgressPolicy(allow_networks=parse_networks("127.0.0.1/32"), resolver=pinned)
    attempts = send(f"http://hook.invalid:{receiver.port}/hook", policy)
    assert [a.status for a in attempts] == [200]
    assert lookups == ["hook.invalid"]
    assert receiver.hosts == [f"hook.invalid:{receiver.port}"]  # the name travels in the Host header


def test_a_refused_answer_body_is_not_echoed() -> None:
    failing = Receiver(status=500)
    try:
        attempts = send(f"http://127.0.0.1:{failing.port}/hook",
                        EgressPolicy(allow_networks=parse_networks("127.0.0.1")))
    finally:
        failing.close()
    assert [(a.status, a.error) for a in attempts] == [(500, ""), (500, "")]


def test_the_allowlist_admits_only_its_ranges(receiver: Receiver) -> None:
    policy = EgressPolicy(allow_networks=parse_networks("127.0.0.1/32"))
    assert [a.status for a in send(f"http://127.0.0.1:{receiver.port}/hook", policy)] == [200]
    assert send("http://10.0.0.7/hook", policy)[0].permanent_failure
    assert EgressPolicy(allow_hosts=frozenset({"localhost"})).refusal(ipaddress.ip_address("127.0.0.1"),
                                                                       "localhost") is None
    with pytest.raises(ValueError, match="LAKEHOUSE_WEBHOOK_ALLOW_PRIVATE_CIDRS entry 'nope'"):
        parse_networks("127.0.0.1/32, nope")


@pytest.mark.parametrize("url, reason", [("http://127.0.0.1:8080/hook", "loopback"),
                                         ("http://10.20.30.40/hook", "private"),
                                         ("http://localhost/hook", "loopback"),
                                         ("http://169.254.169.254/latest/meta-data/", "link-local"),
                                         ("http://[::1]/hook", "loopback")])
def test_a_rule_pointing_inside_is_refused_at_creation(url: str, reason: str) -> None:
    rule = Rule(id="r1", tenant="acme", name="drop", metric="page_views", filters=[], window_minutes=5,
                condition=parse_condition({"type": "threshold", "op": "<", "value": 3}), webhook_url=url)
    with pytest.raises(AlertError, match=reason):
        validate_rule(rule, datetime.now(UTC))
    allowed = EgressPolicy(allow_networks=parse_networks("127.0.0.0/8,10.0.0.0/8,169.254.0.0/16,::1/128"))
    assert validate_rule(rule, datetime.now(UTC), allowed).webhook_url == url
