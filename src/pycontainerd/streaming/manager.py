"""The stream manager: named, per-namespace streams opened by clients.

A client opens a bidirectional ``Streaming.Stream`` call, names it with a ``StreamInit``
message, and then refers to it by that name in other requests (a Transfer's progress stream,
an import's byte stream). The manager keeps the open streams per namespace; a stream leaves
the manager when its user closes it or its call ends.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from pycontainerd.errdefs import AlreadyExists, NotFound

if TYPE_CHECKING:
    from google.protobuf import any_pb2


class EndOfStream(Exception):
    """The peer closed its side of the stream."""


class Stream(Protocol):
    """One open stream of ``google.protobuf.Any`` messages."""

    async def send(self, message: any_pb2.Any) -> None: ...

    async def recv(self) -> any_pb2.Any:
        """The next message; raises :class:`EndOfStream` when the peer is done."""
        ...

    def close(self) -> None: ...


class ManagedStream:
    """A registered stream; closing it unregisters it and ends the client's call."""

    def __init__(self, manager: StreamManager, namespace: str, name: str, stream: Stream) -> None:
        self._manager = manager
        self.namespace = namespace
        self.name = name
        self._stream = stream

    async def send(self, message: any_pb2.Any) -> None:
        await self._stream.send(message)

    async def recv(self) -> any_pb2.Any:
        return await self._stream.recv()

    def close(self) -> None:
        self._manager._forget(self)
        self._stream.close()


class StreamManager:
    """Open streams by namespace and name."""

    def __init__(self) -> None:
        self._streams: dict[tuple[str, str], ManagedStream] = {}
        self._changed = asyncio.Event()

    def register(self, namespace: str, name: str, stream: Stream) -> ManagedStream:
        """Make ``stream`` available as ``name``; AlreadyExists if the name is taken."""
        key = (namespace, name)
        if key in self._streams:
            raise AlreadyExists(f"stream {name!r}: already exists")
        managed = ManagedStream(self, namespace, name, stream)
        self._streams[key] = managed
        return managed

    def get(self, namespace: str, name: str) -> ManagedStream:
        """The open stream ``name``; NotFound if no client opened it."""
        try:
            return self._streams[(namespace, name)]
        except KeyError:
            raise NotFound(f"stream {name!r}: not found") from None

    def _forget(self, managed: ManagedStream) -> None:
        if self._streams.get((managed.namespace, managed.name)) is managed:
            del self._streams[(managed.namespace, managed.name)]

    def __len__(self) -> int:
        return len(self._streams)
