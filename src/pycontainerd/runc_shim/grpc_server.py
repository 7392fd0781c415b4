"""Serving the shim's services over gRPC instead of ttrpc (bootstrap protocol ``grpc``).

The services are the same method tables the ttrpc server takes (name -> (request class,
``async handler(ctx, request)``)); each becomes a grpc.aio unary method through a generic
handler, so no logic is duplicated. Handlers get a ttrpc :class:`CallContext` built from the
gRPC call (metadata, deadline). Their errdefs errors become gRPC statuses with the same
google.rpc codes the ttrpc server would send.

Imported only by a shim that serves gRPC: importing grpc costs ~0.15 s and several MiB, which
ttrpc shims (and the template process they are forked from) do not pay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from pycontainerd.errdefs import rpc_status
from pycontainerd.ttrpc.server import CallContext

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from pycontainerd.ttrpc.server import ErrorToStatus, Handler, MethodTable

MAX_MESSAGE = 16 << 20
_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
)
_STATUS_BY_CODE = {code.value[0]: code for code in grpc.StatusCode}


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in context.invocation_metadata() or ():
        out.setdefault(key, []).append(value.decode(errors="replace") if isinstance(value, bytes) else value)
    return out


def unary_method(service: str, method: str, handler: Handler, error_to_status: ErrorToStatus = rpc_status) -> Any:
    """``handler(ctx, request)`` as a grpc.aio unary behaviour ``(request, context) -> response``."""

    async def behaviour(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
        remaining = context.time_remaining()
        deadline = None if remaining is None else asyncio.get_running_loop().time() + remaining
        ctx = CallContext(service, method, _metadata(context), timeout=remaining, deadline=deadline)
        try:
            return await handler(ctx, request)
        except Exception as exc:
            code, message = error_to_status(exc)
            await context.abort(_STATUS_BY_CODE.get(code, grpc.StatusCode.UNKNOWN), message)
            raise  # abort() always raises; this keeps type checkers content

    return behaviour


def generic_handler(
    service: str, methods: MethodTable, error_to_status: ErrorToStatus = rpc_status
) -> grpc.GenericRpcHandler:
    """A grpc generic handler serving ``methods`` (a ttrpc method table) as ``service``."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            unary_method(service, name, handler, error_to_status),
            request_deserializer=request_cls.FromString,
            response_serializer=_serialize,
        )
        for name, (request_cls, handler) in methods.items()
    }
    return grpc.method_handlers_generic_handler(service, handlers)


class GrpcServer:
    """A grpc.aio server on a unix socket with the ttrpc server's ``register``/``start``/``close``."""

    def __init__(self, *, error_to_status: ErrorToStatus = rpc_status) -> None:
        # grpc's event-loop glue logs a debug line per call: not worth the shim's log FIFO.
        logging.getLogger("grpc._cython.cygrpc").setLevel(logging.INFO)
        self._error_to_status = error_to_status
        self._handlers: list[grpc.GenericRpcHandler] = []
        self._services: set[str] = set()
        self._server: grpc.aio.Server | None = None
        self._path = ""

    def register(self, service: str, methods: MethodTable) -> None:
        """Add a service (before :meth:`start`).

        Raises:
            ValueError: If the service is already registered.
        """
        if service in self._services:
            raise ValueError(f"duplicate service {service} registered")
        self._services.add(service)
        self._handlers.append(generic_handler(service, methods, self._error_to_status))

    async def start(self, path: str) -> None:
        """Listen on the unix socket ``path``; only our own user may connect (mode 0600).

        Raises:
            RuntimeError: If already started or the socket cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError("server already started")
        server = grpc.aio.server(options=_OPTIONS)
        server.add_generic_rpc_handlers(tuple(self._handlers))
        # Bind under a restrictive umask: no moment where others could connect.
        old = os.umask(0o177)
        try:
            server.add_insecure_port(f"unix://{path}")
        finally:
            os.umask(old)
        await server.start()
        self._server, self._path = server, path

    async def close(self, grace: float = 1.0) -> None:
        """Stop serving; calls in flight get ``grace`` seconds to finish."""
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
