"""``containerd.services.streaming.v1.Streaming``: clients open named streams for other calls."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import any_pb2, empty_pb2

from pycontainerd.api.containerd.services.streaming.v1 import streaming_pb2 as pb
from pycontainerd.api.containerd.services.streaming.v1 import streaming_pb2_grpc as pb_grpc
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services._context import request_context
from pycontainerd.streaming.manager import EndOfStream, StreamManager
from pycontainerd.typeurl import name_of, pack

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

STREAM_INIT = pb.StreamInit.DESCRIPTOR.full_name


class _CallStream:
    """The server side of one Streaming.Stream call, as a :class:`Stream`."""

    def __init__(self, requests: AsyncIterator[any_pb2.Any]) -> None:
        self._requests = requests
        self._outgoing: asyncio.Queue[any_pb2.Any | None] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def send(self, message: any_pb2.Any) -> None:
        if self.closed.is_set():
            raise EndOfStream("stream closed")
        await self._outgoing.put(message)

    async def recv(self) -> any_pb2.Any:
        try:
            return await anext(self._requests)
        except StopAsyncIteration:
            raise EndOfStream("client closed the stream") from None
        except grpc.aio.UsageError:
            raise EndOfStream("the stream's call has ended") from None

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self._outgoing.put_nowait(None)

    async def replies(self) -> AsyncIterator[any_pb2.Any]:
        while (message := await self._outgoing.get()) is not None:
            yield message


class StreamingService(pb_grpc.StreamingServicer):
    """Registers each client stream with the manager until it is closed."""

    def __init__(self, manager: StreamManager) -> None:
        self._manager = manager

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_StreamingServicer_to_server(self, server)

    async def Stream(self, request_iterator: AsyncIterator[any_pb2.Any], context: Any) -> AsyncIterator[any_pb2.Any]:
        ctx = request_context(context)
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            return
        if name_of(first) != STREAM_INIT:
            raise InvalidArgument(f"first message on a stream must be {STREAM_INIT}, not {first.type_url}")
        init = pb.StreamInit.FromString(first.value)
        call = _CallStream(request_iterator)
        managed = self._manager.register(ctx.namespace, init.id, call)
        try:
            yield pack(empty_pb2.Empty())
            async for reply in call.replies():
                yield reply
        finally:
            managed.close()


def _init(ctx: InitContext) -> StreamingService:
    return StreamingService(ctx.plugins.first(types.STREAMING))


REGISTRATION = Registration(type=types.GRPC, id="streaming", init=_init, requires=(types.STREAMING,))
MANAGER_REGISTRATION = Registration(type=types.STREAMING, id="manager", init=lambda _ctx: StreamManager())
