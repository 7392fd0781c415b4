"""The ttrpc server: unary methods over a unix socket, many calls in flight per connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError, Message

from .frames import FrameDecoder, FrameError, MessageType, OversizedFrame, encode_frame
from .protocol import (
    Code,
    Metadata,
    ServerStreamCheck,
    TTRPCError,
    decode_request,
    default_error_to_status,
    encode_response,
    metadata_from_pairs,
)

if TYPE_CHECKING:
    from .frames import Event

log = logging.getLogger(__name__)

Handler = Callable[["CallContext", Any], Awaitable[Message]]
"""``async def handler(ctx, request) -> response``."""

MethodTable = Mapping[str, tuple[type[Message], Handler]]
"""Method name -> (request message class, handler)."""

ErrorToStatus = Callable[[BaseException], tuple[int, str]]
"""Maps what a handler raised to ``(status code, message)``."""

_READ_SIZE = 256 * 1024
_PEERCRED = struct.Struct("3i")


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """``SO_PEERCRED`` of the connecting process (as of its ``connect(2)``)."""

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a handler knows about its call.

    Attributes:
        service: The requested service name.
        method: The requested method name.
        metadata: Request metadata, key -> values in wire order (keys as the client sent them).
        timeout: Seconds the client granted the call, or None when it set no timeout.
        deadline: ``loop.time()`` at which the call is cancelled, or None.
        peer: Credentials of the peer process, when the socket provides them.
    """

    service: str
    method: str
    metadata: Metadata = field(default_factory=dict)
    timeout: float | None = None
    deadline: float | None = None
    peer: PeerCredentials | None = None

    def get_all(self, key: str) -> list[str]:
        """All values of ``key``; looked up lowercased, like Go's ``MD.Get``, then as given."""
        return self.metadata.get(key.lower()) or self.metadata.get(key) or []

    def get(self, key: str) -> str | None:
        """The first value of ``key`` (e.g. ``containerd-namespace-ttrpc``), or None."""
        values = self.get_all(key)
        return values[0] if values else None

    def time_remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative), or None without one."""
        if self.deadline is None:
            return None
        return self.deadline - asyncio.get_running_loop().time()


class Server:
    """A ttrpc server.

    Register services, then :meth:`start` on a socket path (or an already listening socket,
    as a shim receives from its parent). Every request runs in its own task; a handler's
    exception becomes a status via ``error_to_status`` (a :class:`TTRPCError` always keeps its
    own code). A connection that sends something that is not ttrpc is closed alone.

    Args:
        error_to_status: Maps handler exceptions to ``(code, message)``.
        require_same_user: Refuse peers whose effective uid/gid differ from ours, as
            containerd and its shims do (``UnixSocketRequireSameUser``).
    """

    def __init__(
        self, *, error_to_status: ErrorToStatus = default_error_to_status, require_same_user: bool = False
    ) -> None:
        self._error_to_status = error_to_status
        self._require_same_user = require_same_user
        self._services: dict[str, dict[str, tuple[type[Message], Handler]]] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._closing = False
        self._bound: tuple[str, int, int] | None = None  # socket file we created: path, st_dev, st_ino

    def register(self, service: str, methods: MethodTable) -> None:
        """Add a service.

        Args:
            service: Fully qualified name, e.g. ``containerd.task.v2.Task``.
            methods: Method name -> (request class, async handler).

        Raises:
            ValueError: If the service is already registered (Go panics here).
        """
        if service in self._services:
            raise ValueError(f"duplicate service {service} registered")
        self._services[service] = dict(methods)

    def lookup(self, service: str, method: str) -> tuple[type[Message], Handler]:
        """Resolve a method.

        Raises:
            TTRPCError: ``UNIMPLEMENTED`` for an unknown service or method (Go's wording).
        """
        methods = self._services.get(service)
        if methods is None:
            raise TTRPCError(Code.UNIMPLEMENTED, f"service {service}")
        entry = methods.get(method)
        if entry is None:
            raise TTRPCError(Code.UNIMPLEMENTED, f"method {method}")
        return entry

    async def start(self, path: str | os.PathLike[str] | None = None, *, sock: socket.socket | None = None) -> None:
        """Listen on a unix socket path, or serve an already bound and listening ``sock``.

        Raises:
            RuntimeError: If already started or closed.
            ValueError: Unless exactly one of ``path`` and ``sock`` is given.
        """
        if self._server is not None or self._closing:
            raise RuntimeError("ttrpc server already started")
        if (path is None) == (sock is None):
            raise ValueError("give exactly one of path and sock")
        if sock is not None:
            self._server = await asyncio.start_unix_server(self._accept, sock=sock)
        elif path is not None:
            address = os.fspath(path)
            self._server = await asyncio.start_unix_server(self._accept, path=address)
            st = os.stat(address)
            self._bound = (address, st.st_dev, st.st_ino)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (empty before start and after close)."""
        if self._server is None or not self._server.is_serving():
            return ()
        return tuple(self._server.sockets)

    @property
    def active_calls(self) -> int:
        """Requests currently being handled, over all connections."""
        return sum(len(conn.tasks) for conn in self._connections)

    async def close(self, grace: float = 0.0) -> None:
        """Stop listening, then end every connection.

        Args:
            grace: Seconds to let in-flight calls finish first (Go's ``Shutdown``); with the
                default 0 they are cancelled at once and their clients see the connection
                close (Go's ``Close``).
        """
        self._closing = True
        if self._server is not None:
            self._server.close()
        if grace > 0:
            loop = asyncio.get_running_loop()
            until = loop.time() + grace
            # Calls may still arrive on open connections meanwhile (as in Go); wait for those too.
            while (tasks := [t for conn in self._connections for t in conn.tasks]) and (
                left := until - loop.time()
            ) > 0:
                await asyncio.wait(tasks, timeout=left)
        connections = list(self._connections)
        for conn in connections:
            conn.abort()
        # Each connection's own task does the cleanup; wait for all of them.
        waiters = [conn.finished for conn in connections]
        if waiters:
            await asyncio.wait(waiters)
        if self._server is not None:
            await self._server.wait_closed()
        self._unlink_socket()

    def _unlink_socket(self) -> None:
        # Like Go's listener, remove the socket file we created, unless someone replaced it.
        if self._bound is None:
            return
        address, dev, ino = self._bound
        self._bound = None
        with contextlib.suppress(OSError):
            st = os.stat(address)
            if (st.st_dev, st.st_ino) == (dev, ino):
                os.unlink(address)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one already established connection until it ends.

        For transports that are not a listening socket, e.g. one of the virtual
        connections NRI multiplexes over a single socket. Returns when the peer goes
        away or the server is closed.
        """
        await self._accept(reader, writer)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer_credentials(writer)
        if self._closing or (self._require_same_user and not _same_user(peer)):
            log.warning("ttrpc: refusing connection from %s", peer)
            writer.close()
            return
        conn = _Connection(self, reader, writer, peer)
        self._connections.add(conn)
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)

    async def handle(self, ctx: CallContext, request_cls: type[Message], handler: Handler, payload: bytes) -> bytes:
        """Run one call to completion and return the serialized ``ttrpc.Response``."""
        try:
            request = request_cls()
            request.ParseFromString(payload)
        except DecodeError as exc:
            return encode_response(Code.INTERNAL, f"ttrpc: error unmarshalling payload: {exc}")
        try:
            async with asyncio.timeout_at(ctx.deadline) as scope:
                result = await handler(ctx, request)
            if result is None:
                raise TTRPCError(Code.UNKNOWN, "ttrpc: marshal called with nil")
            if not isinstance(result, Message):
                raise TTRPCError(Code.INTERNAL, f"ttrpc: error unsupported response type: {type(result).__name__}")
            return encode_response(Code.OK, payload=result.SerializeToString())
        except TimeoutError as exc:
            if scope.expired():
                return encode_response(Code.DEADLINE_EXCEEDED, "context deadline exceeded")
            return self._status_response(exc)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled: the connection is going away
            return encode_response(Code.CANCELLED, "context canceled")
        except Exception as exc:
            return self._status_response(exc)

    def _status_response(self, exc: BaseException) -> bytes:
        log.debug("ttrpc: handler failed", exc_info=exc)
        if isinstance(exc, TTRPCError):
            code, message = int(exc.code), exc.message
        else:
            try:
                code, message = self._error_to_status(exc)
            except Exception:
                log.exception("ttrpc: error_to_status failed")
                code, message = int(Code.UNKNOWN), str(exc)
        if code == Code.OK:
            # An error must never read as success to the client.
            code = int(Code.UNKNOWN)
        return encode_response(code, message)


class _Connection:
    """One accepted connection: reads frames, runs requests, writes responses."""

    def __init__(
        self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: PeerCredentials | None
    ) -> None:
        self._server = server
        self._reader = reader
        self._writer = writer
        self._peer = peer
        self._streams = ServerStreamCheck()
        self.tasks: set[asyncio.Task[None]] = set()
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def abort(self) -> None:
        """Close the socket; :meth:`run` notices and cleans up."""
        self._writer.close()

    async def run(self) -> None:
        decoder = FrameDecoder()
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    break
                for event in decoder.feed(data):
                    self._dispatch(event)
                # Immediate status replies are written without waiting; respect backpressure here.
                await self._writer.drain()
        except FrameError as exc:
            log.warning("ttrpc: closing connection from %s: %s", self._peer, exc)
        except OSError as exc:
            log.debug("ttrpc: connection from %s lost: %s", self._peer, exc)
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        # Like Go, a departed client's in-flight calls are cancelled.
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        if not self.finished.done():
            self.finished.set_result(None)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, OversizedFrame):
            self._send(event.stream_id, encode_response(Code.RESOURCE_EXHAUSTED, event.message))
            return
        problem = self._streams.check(event.stream_id, is_request=event.type == MessageType.REQUEST)
        if problem is not None:
            self._send(event.stream_id, encode_response(Code.INVALID_ARGUMENT, problem))
            return
        if event.type == MessageType.DATA:
            # Only unary methods exist here, so no stream can be open for data.
            self._send(event.stream_id, encode_response(Code.INVALID_ARGUMENT, "StreamID is no longer active"))
            return
        if event.type != MessageType.REQUEST:
            return  # unknown types are ignored for forward compatibility, as in Go
        try:
            request = decode_request(event.payload)
            request_cls, handler = self._server.lookup(request.service, request.method)
        except TTRPCError as exc:
            self._send(event.stream_id, encode_response(exc.code, exc.message))
            return
        loop = asyncio.get_running_loop()
        timeout = request.timeout_nano / 1e9 if request.timeout_nano else None
        ctx = CallContext(
            service=request.service,
            method=request.method,
            metadata=metadata_from_pairs(request.metadata),
            timeout=timeout,
            deadline=None if timeout is None else loop.time() + timeout,
            peer=self._peer,
        )
        coro = self._call(event.stream_id, ctx, request_cls, handler, request.payload)
        task = loop.create_task(coro, name=f"ttrpc {request.service}/{request.method} #{event.stream_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _call(
        self, stream_id: int, ctx: CallContext, request_cls: type[Message], handler: Handler, payload: bytes
    ) -> None:
        response = await self._server.handle(ctx, request_cls, handler, payload)
        self._send(stream_id, response)
        with contextlib.suppress(OSError):
            await self._writer.drain()

    def _send(self, stream_id: int, response: bytes) -> None:
        # One write per frame: asyncio transports never interleave separate write() calls.
        if not self._writer.is_closing():
            self._writer.write(encode_frame(stream_id, MessageType.RESPONSE, response))


def _peer_credentials(writer: asyncio.StreamWriter) -> PeerCredentials | None:
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return None
    pid, uid, gid = _PEERCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


def _same_user(peer: PeerCredentials | None) -> bool:
    return peer is not None and peer.uid == os.geteuid() and peer.gid == os.getegid()
