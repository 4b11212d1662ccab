"""Tracing: with an OTLP endpoint configured, each request exports a server span carrying its request id,
and each hot or lake query a child span with its tier; the collector is a real OTLP/HTTP receiver here
(a small HTTP server decoding the protobuf export requests). Runs last in its file: the tracer provider is
process-wide, and the test shuts it down when done."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from common.settings import Settings
from serving.tracing import configure_tracing


class Collector(ThreadingHTTPServer):
    spans: list[Any]


class _Receive(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        export = ExportTraceServiceRequest.FromString(body)
        assert isinstance(self.server, Collector)
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                self.server.spans.extend((resource, span) for span in scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector(("127.0.0.1", 0), _Receive)
    server.spans = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()


def _attributes(span: Any) -> dict[str, Any]:
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


def test_off_by_default(settings: Settings) -> None:
    assert settings.otel_endpoint == "" and configure_tracing(settings) is None


def test_requests_and_their_queries_are_exported_as_spans_with_the_request_id(
        client: TestClient, settings: Settings, collector: Collector) -> None:
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}/v1/traces"
    provider = configure_tracing(settings.model_copy(update={"otel_endpoint": endpoint}))
    assert provider is not None
    try:
        answer = client.get("/v1/breakdown", params={"tenant": "acme", "metric": "events", "by": "country",
                                                     "range": "1y"}, headers={"X-Request-Id": "trace-me-1234"})
        assert answer.status_code == 200
        assert provider.force_flush(10_000)
    finally:
        provider.shutdown()
    (server_resource, request_span), = [(r, s) for r, s in collector.spans
                                         if _attributes(s).get("lakehouse.request_id") == "trace-me-1234"]
    attributes = _attributes(request_span)
    assert request_span.name == "GET /v1/breakdown" and attributes["http.response.status_code"] == 200
    assert attributes["lakehouse.tenant"] == "acme"
    service = {a.key: a.value.string_value for a in server_resource.resource.attributes}["service.name"]
    assert service == "lakehouse-api"
    in_trace = [s for _, s in collector.spans if s.trace_id == request_span.trace_id and s is not request_span]
    assert all(s.parent_span_id for s in in_trace)  # all below the request's span (FastAPI adds its own too)
    queries = [s for s in in_trace if s.name.startswith("query ")]
    tiers = {_attributes(s)["lakehouse.tier"] for s in queries}
    assert "hot" in tiers and tiers & {"warm", "cold"}, tiers  # a year: the lake's part, then the hot tier's
    assert all(_attributes(s)["lakehouse.tenant"] == "acme" and _attributes(s)["lakehouse.rows"] >= 0
               for s in queries)
