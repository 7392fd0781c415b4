"""OpenTelemetry tracing of gRPC calls, configured through the standard ``OTEL_*`` variables.

Optional: install the extra (``pip install pycontainerd[otel]``), then set one of

* ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``: export spans over
  OTLP/HTTP (protobuf) to a collector, e.g. ``http://127.0.0.1:4318``;
* ``OTEL_TRACES_EXPORTER``: ``otlp`` (the default when an endpoint is set), ``console`` (spans as
  JSON on stdout, for a quick look) or ``none``.

``OTEL_SERVICE_NAME`` names the service (default ``pycontainerd``); ``OTEL_SDK_DISABLED=true``
turns tracing off; sampler and batch settings (``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``) are read
by the SDK itself. Every gRPC call becomes a server span named after the full method
(``/containerd.services.containers.v1.Containers/List``), continuing the caller's trace when the
request carries a W3C ``traceparent``, with the gRPC status and containerd namespace as
attributes. Without the variables (or without the packages) nothing is imported and a call costs
nothing extra.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "pycontainerd"
NAMESPACE_METADATA = "containerd-namespace"


def wanted(env: Mapping[str, str] = os.environ) -> str | None:
    """The exporter the environment asks for (``otlp`` or ``console``), or None for no tracing."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        first = exporter.split(",")[0].strip()
        return None if first == "none" else first
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return "otlp"
    return None


class RPCTracer:
    """Makes one server span per RPC; built by :func:`setup` when tracing is configured."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.provider = provider
        self._tracer = provider.get_tracer("pycontainerd.grpc")
        self._extract = extract
        self._kind = SpanKind.SERVER
        self._status = Status
        self._codes = StatusCode

    @contextmanager
    def rpc(self, method: str, metadata: Any) -> Iterator[Any]:
        """A span around one call; ``metadata`` is the call's invocation metadata (pairs)."""
        carrier = {str(k).lower(): str(v) for k, v in (metadata or ()) if isinstance(v, str)}
        service, _, name = method.lstrip("/").rpartition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        if NAMESPACE_METADATA in carrier:
            attributes["containerd.namespace"] = carrier[NAMESPACE_METADATA]
        with self._tracer.start_as_current_span(
            method, context=self._extract(carrier), kind=self._kind, attributes=attributes
        ) as span:
            yield span

    def finish(self, span: Any, code: str) -> None:
        """Record the call's gRPC status on its span."""
        span.set_attribute("rpc.grpc.status_code", code)
        if code not in ("OK", "ABORTED_BY_HANDLER"):
            span.set_status(self._status(self._codes.ERROR, code))

    def shutdown(self) -> None:
        """Flush pending spans (called at daemon stop)."""
        self.provider.shutdown()


def setup(env: Mapping[str, str] = os.environ) -> RPCTracer | None:
    """An :class:`RPCTracer` when the environment asks for tracing and the packages are there."""
    exporter_name = wanted(env)
    if exporter_name is None:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    except ImportError:
        log.warning("OTEL_* asks for tracing but opentelemetry-sdk is not installed (pip install pycontainerd[otel])")
        return None
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    if exporter_name == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif exporter_name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("OTLP export needs opentelemetry-exporter-otlp-proto-http (pip install pycontainerd[otel])")
            return None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console, none); tracing off", exporter_name)
        return None
    log.info("tracing gRPC calls", extra={"exporter": exporter_name})
    return RPCTracer(provider)
