"""A server interceptor that turns raised errors into gRPC statuses for every RPC, counts RPCs for
the metrics endpoint and, when configured, traces them.

It also owns request decoding: grpcio answers a request it cannot deserialize with UNKNOWN and
logs a traceback, where Go's gRPC (so containerd) answers INTERNAL "grpc: error unmarshalling
request". Deserializers are wrapped so that bytes that do not decode reach the handler wrapper
as :class:`_Undecodable`, which answers as Go does.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from pycontainerd.errdefs import ContainerdError
from pycontainerd.services._status import to_grpc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger("pycontainerd.grpc")


class _Undecodable:
    """A request (or one message of a request stream) whose bytes did not decode."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # protobuf's DecodeError, or whatever a custom deserializer raises
            return _Undecodable(str(exc))

    return deserialize


async def _refuse_undecodable(context: Any, request: _Undecodable) -> None:
    await context.abort(grpc.StatusCode.INTERNAL, f"grpc: error unmarshalling request: {request.reason}")


async def _checked_stream(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Undecodable):
            await _refuse_undecodable(context, request)
        yield request


def _checked_request(request: Any, context: Any, streaming_request: bool) -> Any:
    """The request as the handler should see it: stream messages checked one by one as read."""
    return _checked_stream(request, context) if streaming_request else request


async def _abort(context: Any, method: str, exc: BaseException) -> None:
    code, message = to_grpc(exc)
    if not isinstance(exc, ContainerdError):
        log.error("unexpected error in %s", method, exc_info=exc)
    else:
        log.debug("%s: %s: %s", method, code.name, message)
    await context.abort(code, message)


def _code_of(exc: BaseException | None) -> str:
    if exc is None:
        return "OK"
    if isinstance(exc, grpc.aio.AbortError):
        return "ABORTED_BY_HANDLER"
    return str(to_grpc(exc)[0].name)


def _wrap(
    method: str, behavior: Any, streaming_response: bool, kind: str, metrics: RPCMetrics | None, tracer: Any = None
) -> Any:
    if tracer is not None:
        behavior = _traced(method, behavior, streaming_response, tracer)
    streaming_request = kind in ("client_stream", "bidi_stream")
    if streaming_response:

        async def stream_wrapper(request: Any, context: Any) -> AsyncIterator[Any]:
            started = time.perf_counter()
            failure: BaseException | None = None
            if metrics is not None:
                metrics.started(method, kind)
            try:
                if isinstance(request, _Undecodable):
                    await _refuse_undecodable(context, request)
                async for item in behavior(_checked_request(request, context, streaming_request), context):
                    yield item
            except grpc.aio.AbortError as exc:
                failure = exc
                raise
            except Exception as exc:
                failure = exc
                await _abort(context, method, exc)
            finally:
                if metrics is not None:
                    metrics.handled(method, kind, _code_of(failure), time.perf_counter() - started)

        return stream_wrapper

    async def unary_wrapper(request: Any, context: Any) -> Any:
        started = time.perf_counter()
        failure: BaseException | None = None
        if metrics is not None:
            metrics.started(method, kind)
        try:
            if isinstance(request, _Undecodable):
                await _refuse_undecodable(context, request)
            return await behavior(_checked_request(request, context, streaming_request), context)
        except grpc.aio.AbortError as exc:
            failure = exc
            raise
        except Exception as exc:
            failure = exc
            await _abort(context, method, exc)
        finally:
            if metrics is not None:
                metrics.handled(method, kind, _code_of(failure), time.perf_counter() - started)

    return unary_wrapper


def _traced(method: str, behavior: Any, streaming_response: bool, tracer: Any) -> Any:
    """``behavior`` inside a span (see :mod:`pycontainerd.server.tracing`); errors still reach the caller."""
    if streaming_response:

        async def traced_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            with tracer.rpc(method, context.invocation_metadata()) as span:
                failure: BaseException | None = None
                try:
                    async for item in behavior(request, context):
                        yield item
                except BaseException as exc:
                    failure = exc
                    raise
                finally:
                    tracer.finish(span, _code_of(failure) if not isinstance(failure, GeneratorExit) else "CANCELLED")

        return traced_stream

    async def traced_unary(request: Any, context: Any) -> Any:
        with tracer.rpc(method, context.invocation_metadata()) as span:
            failure: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                failure = exc
                raise
            finally:
                tracer.finish(span, _code_of(failure))

    return traced_unary


class RPCMetrics(Protocol):
    """Where the interceptor reports each RPC (see :class:`pycontainerd.metrics.daemon.DaemonMetrics`)."""

    def started(self, full_method: str, kind: str) -> None: ...

    def handled(self, full_method: str, kind: str, code: str, seconds: float) -> None: ...


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Map :mod:`pycontainerd.errdefs` errors (and any other exception) to status codes, and
    count every RPC (started, handled by code, latency) when given metrics."""

    def __init__(self, metrics: RPCMetrics | None = None, tracer: Any = None) -> None:
        self._metrics = metrics
        self._tracer = tracer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler: Any = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method

        m, t = self._metrics, self._tracer
        handler = handler._replace(request_deserializer=_tolerant(handler.request_deserializer))
        if handler.request_streaming and handler.response_streaming:
            return handler._replace(stream_stream=_wrap(method, handler.stream_stream, True, "bidi_stream", m, t))
        if handler.request_streaming:
            return handler._replace(stream_unary=_wrap(method, handler.stream_unary, False, "client_stream", m, t))
        if handler.response_streaming:
            return handler._replace(unary_stream=_wrap(method, handler.unary_stream, True, "server_stream", m, t))
        return handler._replace(unary_unary=_wrap(method, handler.unary_unary, False, "unary", m, t))
