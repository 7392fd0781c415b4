"""The ttrpc client: unary calls over one unix socket connection, any number in flight."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING, TypeVar

from google.protobuf.message import DecodeError, Message

from .frames import FrameDecoder, FrameError, MessageType, OversizedFrame, encode_frame
from .protocol import (
    ClientStreamIds,
    Code,
    MetadataLike,
    TTRPCConnectionError,
    TTRPCError,
    decode_response,
    encode_request,
)

if TYPE_CHECKING:
    from .frames import Event

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

_READ_SIZE = 256 * 1024
_UNIX_PREFIXES = ("ttrpc+unix://", "unix://")


class Client:
    """A connection to a ttrpc server.

    Create it with :meth:`connect`. Calls may run concurrently; each gets its own stream.
    When the connection ends, every pending call fails with :class:`TTRPCConnectionError`,
    and so does every later call.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Wrap an open connection (most callers want :meth:`connect`)."""
        self._reader = reader
        self._writer = writer
        self._ids = ClientStreamIds()
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._close_reason: str | None = None
        self._receiver = asyncio.get_running_loop().create_task(self._receive(), name="ttrpc client receiver")

    @classmethod
    async def connect(cls, path: str | os.PathLike[str], *, timeout: float | None = None) -> Client:  # noqa: ASYNC109
        """Connect to a server's unix socket.

        Args:
            path: Socket path; a ``unix://`` or ``ttrpc+unix://`` prefix is accepted.
            timeout: Seconds to wait for the connection, or None.

        Raises:
            TTRPCConnectionError: If the socket cannot be reached.
        """
        address = os.fspath(path)
        for prefix in _UNIX_PREFIXES:
            if address.startswith(prefix):
                address = address[len(prefix) :]
                break
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(address)
        except (OSError, TimeoutError) as exc:
            raise TTRPCConnectionError(f"ttrpc: cannot connect to {address}: {exc or 'timed out'}") from exc
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        """True once the connection has ended, for whatever reason."""
        return self._close_reason is not None

    async def call(
        self,
        service: str,
        method: str,
        request: Message,
        response_cls: type[M],
        *,
        metadata: MetadataLike | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the timeout also travels in the request
    ) -> M:
        """Make one unary call.

        Args:
            service: Fully qualified service, e.g. ``containerd.task.v2.Task``.
            method: Method name, e.g. ``Connect``.
            request: The request message.
            response_cls: The class to parse the response into.
            metadata: Request metadata, e.g. ``{"containerd-namespace-ttrpc": "default"}``.
            timeout: Seconds; sent to the server (which cancels the handler when it runs
                out) and enforced here too.

        Returns:
            The response message.

        Raises:
            TTRPCError: For a non-OK status, including ``DEADLINE_EXCEEDED`` on timeout and
                ``RESOURCE_EXHAUSTED`` for a request over 4 MiB (never sent).
            TTRPCConnectionError: If the connection is or becomes unusable.
        """
        if self._close_reason is not None:
            raise TTRPCConnectionError(self._close_reason)
        timeout_nano = 0
        if timeout is not None:
            if timeout <= 0:
                raise TTRPCError(Code.DEADLINE_EXCEEDED, "context deadline exceeded")
            timeout_nano = max(1, int(timeout * 1e9))
        data = encode_request(
            service, method, request.SerializeToString(), metadata=metadata, timeout_nano=timeout_nano
        )
        # No await between allocating the id and writing the frame: ids reach the wire in
        # increasing order, which Go's server insists on.
        stream_id = self._ids.allocate()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = future
        try:
            async with asyncio.timeout(timeout) as scope:
                self._writer.write(encode_frame(stream_id, MessageType.REQUEST, data))
                await self._writer.drain()
                raw = await future
        except TimeoutError:
            if scope.expired():
                raise TTRPCError(Code.DEADLINE_EXCEEDED, "context deadline exceeded") from None
            raise
        except TTRPCConnectionError:
            raise  # already explained by the receiver (it is an OSError too)
        except OSError as exc:
            self._fail_all(f"ttrpc: closed: {exc}")
            raise TTRPCConnectionError(f"ttrpc: closed: {exc}") from exc
        finally:
            # A late response for an abandoned stream is then simply dropped.
            self._pending.pop(stream_id, None)
            if future.done() and not future.cancelled():
                future.exception()  # mark retrieved even if we were cancelled meanwhile
        response = response_cls()
        try:
            response.ParseFromString(decode_response(raw))
        except DecodeError as exc:
            raise TTRPCError(Code.INTERNAL, f"ttrpc: error unmarshalling response: {exc}") from exc
        return response

    async def close(self) -> None:
        """Close the connection; pending calls fail with :class:`TTRPCConnectionError`."""
        self._fail_all("ttrpc: closed")
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        self._receiver.cancel()
        # asyncio.wait never raises the task's outcome, so our own cancellation still propagates.
        await asyncio.wait([self._receiver])

    async def wait_closed(self) -> str:
        """Wait until the connection ends (e.g. the server went away); returns why."""
        await asyncio.wait([self._receiver])
        return self._close_reason or "ttrpc: closed"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _receive(self) -> None:
        decoder = FrameDecoder()
        reason = "ttrpc: closed: connection closed by server"
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    if not decoder.idle:
                        reason = "ttrpc: closed: connection closed by server in the middle of a message"
                    break
                for event in decoder.feed(data):
                    self._deliver(event)
        except FrameError as exc:
            reason = f"ttrpc: protocol error from server: {exc}"
        except OSError as exc:
            reason = f"ttrpc: closed: {exc}"
        finally:
            self._fail_all(reason)
            self._writer.close()

    def _deliver(self, event: Event) -> None:
        future = self._pending.get(event.stream_id)
        if future is None or future.done():
            # Go logs and drops these too: typically the answer to a call that timed out.
            log.debug("ttrpc: message for inactive stream %d dropped", event.stream_id)
            return
        if isinstance(event, OversizedFrame):
            future.set_exception(TTRPCError(Code.RESOURCE_EXHAUSTED, event.message))
        elif event.type == MessageType.RESPONSE:
            future.set_result(event.payload)
        elif event.type == MessageType.DATA:
            future.set_exception(TTRPCError(Code.INTERNAL, "ttrpc: received data from non-streaming server"))
        # Other types are ignored for forward compatibility.

    def _fail_all(self, reason: str) -> None:
        if self._close_reason is None:
            self._close_reason = reason
        for future in self._pending.values():
            if not future.done():
                # A fresh exception per waiter: tracebacks attach to the instance.
                future.set_exception(TTRPCConnectionError(self._close_reason))
