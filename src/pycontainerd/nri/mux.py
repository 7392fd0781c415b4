"""NRI's connection multiplexer: several byte streams over one unix socket connection.

NRI runs two ttrpc connections between a runtime and a plugin over a single socket: the
plugin serves the ``Plugin`` service on connection :data:`PLUGIN_SERVICE_CONN` and the
runtime serves the ``Runtime`` service on :data:`RUNTIME_SERVICE_CONN`. Each chunk of a
stream travels in a frame::

    0            4            8
    +------------+------------+------------------+
    | conn id    | length     | payload (length) |
    +------------+------------+------------------+

both header fields big-endian ``u32``. A write longer than :data:`MAX_PAYLOAD` is cut into
several frames. Opening a connection sends nothing: each side simply assumes the peer uses
the same ids. Frames for a connection nobody opened are dropped, as Go's mux does.

The framing half (:func:`encode_frames`, :class:`MuxDecoder`) does no I/O; :class:`Mux` is
the asyncio driver. It hands out each virtual connection as an ``asyncio`` stream pair, so
the existing ttrpc :class:`~pycontainerd.ttrpc.Client` and
:meth:`~pycontainerd.ttrpc.Server.serve_connection` run over it unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from typing import Any

from pycontainerd.aio import spawn
from pycontainerd.ttrpc.frames import HEADER_LENGTH as TTRPC_HEADER_LENGTH
from pycontainerd.ttrpc.frames import MAX_MESSAGE_LENGTH as TTRPC_MAX_MESSAGE_LENGTH

log = logging.getLogger(__name__)

PLUGIN_SERVICE_CONN = 1
"""Connection carrying the Plugin service (plugin serves, runtime calls)."""
RUNTIME_SERVICE_CONN = 2
"""Connection carrying the Runtime service (runtime serves, plugin calls)."""

HEADER_LENGTH = 8
MAX_PAYLOAD = TTRPC_HEADER_LENGTH + TTRPC_MAX_MESSAGE_LENGTH
"""Largest payload of one frame: exactly one maximal ttrpc frame."""

_HEADER = struct.Struct(">II")
_READ_SIZE = 256 * 1024


class MuxError(Exception):
    """The trunk carries something that is not NRI mux framing."""


def encode_frames(conn_id: int, data: bytes | bytearray | memoryview) -> bytes:
    """Frame ``data`` for connection ``conn_id``, split into chunks of at most :data:`MAX_PAYLOAD`.

    Args:
        conn_id: The virtual connection, ``1 <= conn_id < 2**32`` (0 is reserved).
        data: The bytes to send; empty data yields no frame at all.

    Returns:
        The frames, concatenated.

    Raises:
        ValueError: For a reserved or out-of-range connection id.
    """
    if not 0 < conn_id < 1 << 32:
        raise ValueError(f"invalid NRI mux connection id {conn_id}")
    view = memoryview(data)
    parts: list[bytes | memoryview] = []
    for start in range(0, len(view), MAX_PAYLOAD):
        chunk = view[start : start + MAX_PAYLOAD]
        parts.append(_HEADER.pack(conn_id, len(chunk)))
        parts.append(chunk)
    return b"".join(parts)


class MuxDecoder:
    """Incremental decoder: feed trunk bytes, get ``(conn_id, payload)`` pairs back."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def idle(self) -> bool:
        """True when no partial frame is buffered."""
        return not self._buf

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
        """Consume ``data`` and return the frames it completed.

        Raises:
            MuxError: If a frame announces more than :data:`MAX_PAYLOAD` bytes (no peer
                writes that; the stream cannot be trusted any more).
        """
        self._buf += data
        buf = self._buf
        frames: list[tuple[int, bytes]] = []
        pos = 0
        while len(buf) - pos >= HEADER_LENGTH:
            conn_id, length = _HEADER.unpack_from(buf, pos)
            if length > MAX_PAYLOAD:
                buf.clear()
                raise MuxError(f"NRI mux frame of {length} bytes for connection {conn_id} exceeds {MAX_PAYLOAD}")
            end = pos + HEADER_LENGTH + length
            if len(buf) < end:
                break
            frames.append((conn_id, bytes(buf[pos + HEADER_LENGTH : end])))
            pos = end
        del buf[:pos]
        return frames


class _VirtualTransport(asyncio.Transport):
    """The write side of one virtual connection: frames writes onto the trunk."""

    def __init__(self, mux: Mux, conn_id: int, protocol: asyncio.StreamReaderProtocol) -> None:
        super().__init__()
        self._mux = mux
        self._conn_id = conn_id
        self._protocol = protocol
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        self._mux.send(self._conn_id, data)

    def is_closing(self) -> bool:
        return self._closing or self._mux.closed

    def close(self) -> None:
        # Like Go's mux, closing one connection tells the peer nothing; only the trunk's
        # end is visible on the other side.
        if self._closing:
            return
        self._closing = True
        self._mux.forget(self._conn_id)
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        # All connections share the trunk: stalling one would stall the others.
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return not self._closing


class Mux:
    """Multiplexes virtual connections over one stream (the trunk).

    Open the connections you need, then :meth:`start` the reader: frames that arrive for
    a connection not yet opened would otherwise be lost. When the trunk ends (EOF, error,
    or :meth:`close`), every virtual connection sees EOF.

    Args:
        reader: The trunk's read side.
        writer: The trunk's write side.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._conns: dict[int, tuple[asyncio.StreamReader, _VirtualTransport]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._reason = ""
        self._done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    @classmethod
    async def over_socket(cls, sock: Any) -> Mux:
        """Wrap a connected unix socket (it is then owned by the mux)."""
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        """True once the trunk has ended."""
        return self._closed

    @property
    def reason(self) -> str:
        """Why the trunk ended (empty while open)."""
        return self._reason

    def open(self, conn_id: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Return the stream pair of a virtual connection (the same id twice is an error).

        Raises:
            ValueError: For the reserved id 0 or an id already open.
            ConnectionError: If the mux is closed.
        """
        if conn_id <= 0:
            raise ValueError(f"NRI mux connection id {conn_id} is reserved")
        if conn_id in self._conns:
            raise ValueError(f"NRI mux connection {conn_id} is already open")
        if self._closed:
            raise ConnectionError(f"NRI mux closed: {self._reason}")
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_PAYLOAD)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport = _VirtualTransport(self, conn_id, protocol)
        protocol.connection_made(transport)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        self._conns[conn_id] = (reader, transport)
        return reader, writer

    def start(self) -> None:
        """Start delivering incoming frames (Go's ``Unblock``)."""
        if self._task is None and not self._closed:
            self._task = spawn(self._read_loop(), name="nri mux reader")

    def send(self, conn_id: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` for ``conn_id`` onto the trunk (one ``write`` per call: never interleaved)."""
        if self._closed or not data:
            return
        self._writer.write(encode_frames(conn_id, data))

    def forget(self, conn_id: int) -> None:
        """Drop a closed virtual connection; later frames for it are discarded."""
        self._conns.pop(conn_id, None)

    async def wait_closed(self) -> str:
        """Wait until the trunk ends; returns the reason."""
        return await asyncio.shield(self._done)

    async def close(self, reason: str = "closed") -> None:
        """End the trunk and with it every virtual connection."""
        self._shutdown(reason)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            await asyncio.wait([self._task])
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def _read_loop(self) -> None:
        decoder = MuxDecoder()
        reason = "connection closed by peer"
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    if not decoder.idle:
                        reason = "connection closed by peer in the middle of a frame"
                    break
                for conn_id, payload in decoder.feed(data):
                    entry = self._conns.get(conn_id)
                    if entry is None:
                        log.debug("nri mux: dropping %d bytes for unopened connection %d", len(payload), conn_id)
                        continue
                    entry[0].feed_data(payload)
        except MuxError as exc:
            reason = str(exc)
        except OSError as exc:
            reason = f"connection lost: {exc}"
        finally:
            self._shutdown(reason)

    def _shutdown(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._reason = reason
        for reader, transport in list(self._conns.values()):
            reader.feed_eof()
            transport.close()
        self._conns.clear()
        self._writer.close()
        if not self._done.done():
            self._done.set_result(reason)
