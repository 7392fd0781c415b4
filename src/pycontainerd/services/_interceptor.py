"""A server interceptor that turns raised errors into gRPC statuses for every RPC."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import grpc

from pycontainerd.errdefs import ContainerdError
from pycontainerd.services._status import to_grpc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger("pycontainerd.grpc")


async def _abort(context: Any, method: str, exc: BaseException) -> None:
    code, message = to_grpc(exc)
    if not isinstance(exc, ContainerdError):
        log.error("unexpected error in %s", method, exc_info=exc)
    else:
        log.debug("%s: %s: %s", method, code.name, message)
    await context.abort(code, message)


def _wrap(method: str, behavior: Any, streaming_response: bool) -> Any:
    if streaming_response:

        async def stream_wrapper(request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for item in behavior(request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, method, exc)

        return stream_wrapper

    async def unary_wrapper(request: Any, context: Any) -> Any:
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, method, exc)

    return unary_wrapper


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Map :mod:`pycontainerd.errdefs` errors (and any other exception) to status codes."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler: Any = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method

        if handler.request_streaming and handler.response_streaming:
            return handler._replace(stream_stream=_wrap(method, handler.stream_stream, True))
        if handler.request_streaming:
            return handler._replace(stream_unary=_wrap(method, handler.stream_unary, False))
        if handler.response_streaming:
            return handler._replace(unary_stream=_wrap(method, handler.unary_stream, True))
        return handler._replace(unary_unary=_wrap(method, handler.unary_unary, False))
