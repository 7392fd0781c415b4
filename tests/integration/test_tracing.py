"""OpenTelemetry: the daemon exports a span per gRPC call to an OTLP/HTTP collector (a small one
run by the test), continuing the caller's W3C trace and recording status and namespace."""

from __future__ import annotations

import http.server
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pycontainerd.api.containerd.services.version.v1 import version_pb2
from tests.support.daemon import running_daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]


class Collector(http.server.ThreadingHTTPServer):
    spans: list[Any]


class Handler(http.server.BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}.get("service.name")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.server.spans.append((service, span))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector(("127.0.0.1", 0), Handler)
    server.spans = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def attrs(span: Any) -> dict[str, str]:
    return {a.key: a.value.string_value for a in span.attributes}


def test_grpc_calls_become_spans(collector: Collector) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_SERVICE_NAME": "pcd-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    with running_daemon(env=env) as d:
        d.ctr("containers", "ls", namespace="traced")
        d.ctr("containers", "info", "absent", namespace="traced", check=False)
        with grpc.insecure_channel(f"unix://{d.address}") as channel:
            call = channel.unary_unary(
                "/containerd.services.version.v1.Version/Version",
                request_serializer=lambda _: b"",
                response_deserializer=version_pb2.VersionResponse.FromString,
            )
            call(None, metadata=[("traceparent", f"00-{trace_id}-{parent_id}-01")], timeout=10)

        def names() -> set[str]:
            return {span.name for _, span in collector.spans}

        deadline = time.monotonic() + 15
        wanted = {
            "/containerd.services.containers.v1.Containers/ListStream",
            "/containerd.services.containers.v1.Containers/Get",
            "/containerd.services.version.v1.Version/Version",
        }
        while not wanted <= names() and time.monotonic() < deadline:
            time.sleep(0.1)
    spans = {span.name: (service, span) for service, span in collector.spans}
    assert wanted <= set(spans), sorted(spans)
    service, listing = spans["/containerd.services.containers.v1.Containers/ListStream"]
    assert service == "pcd-under-test"
    assert attrs(listing)["containerd.namespace"] == "traced"
    assert attrs(listing)["rpc.grpc.status_code"] == "OK" and attrs(listing)["rpc.system"] == "grpc"
    assert listing.kind == listing.SPAN_KIND_SERVER
    _, missing = spans["/containerd.services.containers.v1.Containers/Get"]
    assert attrs(missing)["rpc.grpc.status_code"] == "NOT_FOUND"
    assert missing.status.code == missing.status.STATUS_CODE_ERROR
    continued = [span for _, span in collector.spans if span.trace_id.hex() == trace_id]
    assert [span.name for span in continued] == ["/containerd.services.version.v1.Version/Version"]
    assert continued[0].parent_span_id.hex() == parent_id


def test_no_otel_variables_no_tracing() -> None:
    from pycontainerd.server.tracing import setup, wanted

    assert wanted({}) is None
    assert wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}) == "otlp"
    assert wanted({"OTEL_TRACES_EXPORTER": "console"}) == "console"
    assert wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}) is None
    assert wanted({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}) is None
    assert setup({}) is None
    assert setup({"OTEL_TRACES_EXPORTER": "zipkin"}) is None
