"""The asyncio driver of a :class:`~.spdy_session.SpdySession`: a socket plus stream objects.

:class:`SpdyConnection` owns the socket. :meth:`SpdyConnection.run` reads it and feeds the
session; everything the session queues is written at once (in order: the session is only touched
from the event loop, and each action is followed by a synchronous write of its bytes).
:class:`SpdyStream` is what handlers see: it implements the ``ByteReader``/``ByteWriter`` of
:mod:`.api`, waiting for window updates and socket buffers when writing.

Memory bound: received data waits in per-stream :class:`~.pipe.InboundBuffer` objects. A peer
that honours flow control cannot exceed the windows; for one that does not (spdystream), the
read loop stops reading the socket while more than ``high_water`` bytes wait, which pushes back
through TCP the way spdystream's unbuffered channels do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from pycontainerd.cri.streaming.pipe import IdleTimer, InboundBuffer
from pycontainerd.cri.streaming.spdy_events import (
    DataReceived,
    Event,
    StreamEnded,
    StreamOpened,
    StreamReplied,
    StreamReset,
    WindowOpened,
)
from pycontainerd.cri.streaming.spdy_frames import GoAwayStatus, RstStatus, SpdyProtocolError

if TYPE_CHECKING:
    from pycontainerd.cri.streaming.spdy_headers import Headers
    from pycontainerd.cri.streaming.spdy_session import SpdySession

log = logging.getLogger(__name__)

HIGH_WATER = 1 << 20
"""Received bytes waiting for readers before the socket stops being read."""

LINGER = 5.0
"""Seconds :meth:`SpdyConnection.close` waits for the peer to close after GOAWAY."""


class SpdyStream:
    """One stream as the application sees it (a :class:`~.api.DuplexStream`)."""

    def __init__(self, conn: SpdyConnection, stream_id: int, headers: Headers) -> None:
        self.conn = conn
        self.id = stream_id
        self.headers = headers
        self.reset_status: int | None = None
        self._buffer = InboundBuffer(self._consumed)
        self._write_lock = asyncio.Lock()

    def header(self, name: str) -> str:
        """The value of header ``name`` (lowercase on the wire), or ``""``."""
        return self.headers.get(name.lower(), "")

    async def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` received bytes; ``b""`` after the peer's FIN, a reset, or connection loss."""
        return await self._buffer.read(n)

    async def read_all(self, limit: int = 1 << 20) -> bytes:
        """Everything until end of stream (at most ``limit`` bytes kept)."""
        return await self._buffer.read_all(limit)

    def discard_input(self) -> None:
        """Nobody reads this stream: drop what arrives (keeping windows open)."""
        self._buffer.discard()

    async def write(self, data: bytes) -> None:
        """Send ``data``, waiting for flow-control windows and the socket.

        Raises:
            ConnectionResetError: The stream was reset or closed for sending, or the connection is gone.
        """
        view = memoryview(data)
        async with self._write_lock:
            while view:
                view = view[await self.conn._send_some(self.id, view) :]

    async def close(self) -> None:
        """Half-close: send FIN (idempotent; a no-op on a reset stream)."""
        self.conn._end_stream(self.id)

    def reset(self, status: int = RstStatus.CANCEL) -> None:
        """Abort the stream in both directions."""
        self.conn._reset(self.id, status)

    def _consumed(self, size: int) -> None:
        self.conn._consumed(self.id, size)

    def _ended(self) -> None:
        self._buffer.feed_eof()

    @property
    def buffered(self) -> int:
        """Received bytes not read yet."""
        return self._buffer.buffered


class SpdyConnection:
    """A SPDY session on an upgraded socket.

    Args:
        reader: The socket's reader, positioned after the HTTP head (buffered bytes are frames).
        writer: The socket's writer.
        session: The protocol state; a server or client session.
        idle_timeout: Close after this many seconds without frames either way (None: never).
        high_water: See the module docstring.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: SpdySession,
        *,
        idle_timeout: float | None = None,
        high_water: int = HIGH_WATER,
    ) -> None:
        self.session = session
        self._reader = reader
        self._writer = writer
        self._streams: dict[int, SpdyStream] = {}
        self._incoming: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self._replies: dict[int, asyncio.Future[None]] = {}
        self._window = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._high_water = high_water
        self._buffered = 0
        self.closed = asyncio.Event()
        """Set once the socket is finished (EOF, error, idle timeout, or :meth:`close`)."""
        self._idle = IdleTimer(idle_timeout, self._on_idle)
        self._flush()

    # -- the read loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Read and dispatch frames until the connection ends; never raises for peer misbehaviour."""
        self._idle.start()
        try:
            while True:
                if self._buffered > self._high_water:
                    self._drained.clear()
                    await self._drained.wait()
                data = await self._reader.read(65536)
                if not data:
                    break
                self._idle.touch()
                try:
                    events = self.session.receive_data(data)
                except SpdyProtocolError as exc:
                    log.debug("SPDY protocol error from peer: %s", exc)
                    self.session.go_away(GoAwayStatus.PROTOCOL_ERROR)
                    self._flush()
                    break
                self._flush()
                for event in events:
                    self._dispatch(event)
        except (ConnectionError, OSError) as exc:
            log.debug("SPDY connection lost: %s", exc)
        finally:
            self._idle.cancel()
            self._finish()

    def _dispatch(self, event: Event) -> None:
        match event:
            case StreamOpened(stream_id, headers, _fin):
                stream = SpdyStream(self, stream_id, headers)
                self._streams[stream_id] = stream
                self._incoming.put_nowait(stream)
            case DataReceived(stream_id, data):
                if (receiving := self._streams.get(stream_id)) is not None:
                    self._buffered += len(data)
                    receiving._buffer.feed(data)
                else:
                    self.session.acknowledge(stream_id, len(data))
                    self._flush()
            case StreamEnded(stream_id):
                if (ended := self._streams.get(stream_id)) is not None:
                    ended._ended()
                self._forget_if_done(stream_id)
            case StreamReset(stream_id, status):
                if (gone := self._streams.pop(stream_id, None)) is not None:
                    gone.reset_status = status
                    gone._ended()
                if (reply := self._replies.pop(stream_id, None)) is not None and not reply.done():
                    reply.set_exception(ConnectionRefusedError(f"stream {stream_id} reset by peer (status {status})"))
                self._wake_writers()
            case StreamReplied(stream_id, _headers):
                if (reply := self._replies.pop(stream_id, None)) is not None and not reply.done():
                    reply.set_result(None)
            case WindowOpened():
                self._wake_writers()
            case _:
                pass

    def _finish(self) -> None:
        self.closed.set()
        for stream in self._streams.values():
            stream._ended()
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(ConnectionResetError("SPDY connection closed"))
        self._replies.clear()
        self._incoming.put_nowait(None)
        self._wake_writers()
        self._drained.set()
        self._writer.close()

    # -- streams --------------------------------------------------------------------------

    async def accept(self) -> SpdyStream | None:
        """The next stream the peer opened (reply to it or reset it); None once the connection ended."""
        stream = await self._incoming.get()
        if stream is None:
            self._incoming.put_nowait(None)
        return stream

    def reply(self, stream: SpdyStream, headers: Headers | None = None) -> None:
        """Accept a peer stream."""
        if not self.closed.is_set():
            self.session.reply(stream.id, headers)
            self._flush()

    async def open_stream(self, headers: Headers, *, reply_timeout: float = 30.0) -> SpdyStream:
        """Open a stream and wait for the peer's SYN_REPLY (client side, as spdystream's CreateStream).

        Raises:
            ConnectionError: The peer reset the stream or the connection ended.
            TimeoutError: No reply within ``reply_timeout``.
        """
        if self.closed.is_set():
            raise ConnectionResetError("SPDY connection closed")
        stream_id = self.session.open_stream(headers)
        stream = SpdyStream(self, stream_id, headers)
        self._streams[stream_id] = stream
        reply = self._replies[stream_id] = asyncio.get_running_loop().create_future()
        self._flush()
        async with asyncio.timeout(reply_timeout):
            await reply
        return stream

    @property
    def open_streams(self) -> int:
        """Streams not yet closed both ways."""
        return len(self._streams)

    def ping(self) -> None:
        """Send a PING frame."""
        self.session.ping()
        self._flush()

    async def close(self, *, linger: float = LINGER) -> None:
        """End the connection the way spdystream peers expect.

        FIN every stream still open for sending, reset those the peer has not finished, send
        GOAWAY, stop writing, and wait (at most ``linger`` seconds) for the peer to close, so that
        the kernel delivers everything already written instead of answering with a TCP reset.
        """
        if not self.closed.is_set():
            for stream_id in self.session.stream_ids:
                self.session.end_stream(stream_id)
                if self.session.remote_open(stream_id):
                    self.session.reset(stream_id, RstStatus.CANCEL)
            self.session.go_away()
            self._flush()
            with contextlib.suppress(OSError, RuntimeError):
                if self._writer.can_write_eof():
                    self._writer.write_eof()
            task = asyncio.current_task()
            if task is None or not task.cancelling():  # a cancelled session (server stop) does not linger
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(linger):
                        await self.closed.wait()
        self.abort()

    def abort(self) -> None:
        """Drop the socket now."""
        self._writer.close()
        self._drained.set()
        if not self.closed.is_set():
            self._writer.transport.abort()

    # -- used by SpdyStream ---------------------------------------------------------------

    async def _send_some(self, stream_id: int, data: memoryview) -> int:
        while True:
            if self.closed.is_set() or not self.session.local_open(stream_id):
                raise ConnectionResetError(f"SPDY stream {stream_id} is closed")
            window = self._window
            sent = self.session.send_data(stream_id, data)
            if sent:
                self._flush()
                await self._writer.drain()
                return sent
            await window.wait()

    def _end_stream(self, stream_id: int) -> None:
        if not self.closed.is_set():
            self.session.end_stream(stream_id)
            self._flush()
            self._forget_if_done(stream_id)

    def _forget_if_done(self, stream_id: int) -> None:
        # Closed both ways: no frame will be dispatched to it again. Its reader keeps the buffer.
        if not self.session.is_open(stream_id):
            self._streams.pop(stream_id, None)

    def _reset(self, stream_id: int, status: int) -> None:
        if (stream := self._streams.pop(stream_id, None)) is not None:
            stream.reset_status = status
            stream._ended()
        if not self.closed.is_set():
            self.session.reset(stream_id, status)
            self._flush()
        self._wake_writers()

    def _consumed(self, stream_id: int, size: int) -> None:
        self._buffered = max(0, self._buffered - size)
        if self._buffered <= self._high_water // 2:
            self._drained.set()
        if not self.closed.is_set():
            self.session.acknowledge(stream_id, size)
            self._flush()

    def _wake_writers(self) -> None:
        self._window.set()
        self._window = asyncio.Event()

    def _flush(self) -> None:
        data = self.session.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)
            self._idle.touch()

    def _on_idle(self) -> None:
        log.debug("closing idle SPDY connection")
        self.session.go_away()
        self._flush()
        self.abort()
