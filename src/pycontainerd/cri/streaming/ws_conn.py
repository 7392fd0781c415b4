"""The asyncio side of websockets: a message connection and kubelet's channel multiplexing.

:class:`WebSocketConnection` turns an upgraded socket into messages: it answers pings, performs
the closing handshake and enforces the idle timeout. :class:`ChannelMux` is kubelet's
``wsstream.Conn`` on top: every message starts with a channel number (a byte, or an ASCII digit
with the base64 codec), data for readable channels lands in per-channel buffers, and writers
prefix their channel. With ``v5.channel.k8s.io`` a message ``[255, n]`` closes channel ``n``
(the client's stdin EOF); websockets have no other way to half-close.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging

from pycontainerd.cri.streaming.pipe import IdleTimer, InboundBuffer
from pycontainerd.cri.streaming.ws_frames import (
    CloseCode,
    FrameParser,
    Message,
    Opcode,
    WebSocketProtocolError,
    close_payload,
    encode_frame,
)

log = logging.getLogger(__name__)

LINGER = 5.0
"""Seconds :meth:`WebSocketConnection.close` waits for the peer's CLOSE."""

STREAM_CLOSE = 255
"""v5 ``channel.k8s.io``: first byte of a "close channel" message."""

HIGH_WATER = 1 << 20


class WebSocketConnection:
    """One end of an upgraded websocket connection.

    Args:
        reader: The socket's reader, positioned after the HTTP head.
        writer: The socket's writer.
        client: True on the side that sent the upgrade request (it masks its frames).
        idle_timeout: Close after this many seconds without traffic (None: never).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        client: bool,
        idle_timeout: float | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._client = client
        self._parser = FrameParser(server=not client)
        self._close_sent = False
        self.closed = asyncio.Event()
        """Set once the socket is finished."""
        self.close_code: int | None = None
        """The status code of the peer's CLOSE, once received."""
        self._idle = IdleTimer(idle_timeout, self._on_idle)

    async def receive(self) -> Message | None:
        """The next TEXT or BINARY message; None once the connection is closed."""
        self._idle.start()
        while not self.closed.is_set():
            try:
                message = self._parser.next_message()
            except WebSocketProtocolError as exc:
                log.debug("websocket protocol error from peer: %s", exc)
                self._send_close(exc.code)
                self._finish()
                return None
            if message is None:
                try:
                    data = await self._reader.read(65536)
                except (ConnectionError, OSError):
                    data = b""
                if not data:
                    self._finish()
                    return None
                self._idle.touch()
                self._parser.feed(data)
                continue
            if message.opcode == Opcode.PING:
                self._write(Opcode.PONG, message.payload)
            elif message.opcode == Opcode.CLOSE:
                self.close_code = message.close_code()
                self._send_close(self.close_code or CloseCode.NORMAL)
                self._finish()
                return None
            elif message.opcode in (Opcode.TEXT, Opcode.BINARY):
                return message
        return None

    async def send(self, opcode: Opcode, payload: bytes) -> None:
        """Send one message, waiting for the socket.

        Raises:
            ConnectionResetError: The connection is closing or closed.
        """
        if self._close_sent or self.closed.is_set():
            raise ConnectionResetError("websocket is closed")
        self._write(opcode, payload)
        await self._writer.drain()

    async def ping(self, payload: bytes = b"") -> None:
        """Send a PING (the peer's PONG is swallowed by :meth:`receive`)."""
        await self.send(Opcode.PING, payload)

    async def close(self, code: int = CloseCode.NORMAL, *, linger: float = LINGER) -> None:
        """Start (or finish) the closing handshake; wait at most ``linger`` for the peer, then drop the socket.

        Someone must be calling :meth:`receive` meanwhile, or the wait always takes ``linger``.
        """
        self._send_close(code)
        if not _being_cancelled():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(linger):
                    await self.closed.wait()
        self.abort()

    def abort(self) -> None:
        """Drop the socket now."""
        self._finish()
        self._writer.transport.abort()

    def _send_close(self, code: int) -> None:
        if not self._close_sent and not self.closed.is_set():
            self._write(Opcode.CLOSE, close_payload(code))
            self._close_sent = True

    def _write(self, opcode: Opcode, payload: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(encode_frame(opcode, payload, mask=self._client))
            self._idle.touch()

    def _finish(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self._idle.cancel()
            self._writer.close()

    def _on_idle(self) -> None:
        log.debug("closing idle websocket connection")
        self._send_close(CloseCode.GOING_AWAY)
        self.abort()


def _being_cancelled() -> bool:
    # A cancelled session (server stop) closes at once instead of lingering in its finally block.
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class ChannelReader:
    """The readable side of one channel (a :class:`~.api.ByteReader`)."""

    def __init__(self, mux: ChannelMux) -> None:
        self.buffer = InboundBuffer(mux._consumed)

    async def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes; ``b""`` once the channel or the connection closed."""
        return await self.buffer.read(n)


class ChannelWriter:
    """The writable side of one channel (a :class:`~.api.ByteWriter`)."""

    def __init__(self, mux: ChannelMux, channel: int) -> None:
        self._mux = mux
        self.channel = channel

    async def write(self, data: bytes) -> None:
        """Send ``data`` as one message on this channel."""
        await self._mux.send(self.channel, data)

    async def close(self) -> None:
        """Nothing to do: the channel protocols cannot half-close a server-to-client channel."""


class ChannelDuplex(ChannelReader, ChannelWriter):
    """A channel both sides write (port forward's data channels)."""

    def __init__(self, mux: ChannelMux, channel: int) -> None:
        ChannelReader.__init__(self, mux)
        ChannelWriter.__init__(self, mux, channel)


class ChannelMux:
    """kubelet's channel protocol over a websocket (server side).

    Args:
        ws: The connection.
        channels: How many channels the protocol defines; data for higher numbers is ignored.
        readable: Channels whose client data is kept; data for the others is dropped.
        base64: The ``base64.channel.k8s.io`` codec (text messages) instead of the binary one.
        stream_close: Whether ``[255, n]`` close signals are understood (v5).
    """

    def __init__(
        self,
        ws: WebSocketConnection,
        *,
        channels: int,
        readable: set[int],
        base64: bool = False,
        stream_close: bool = False,
    ) -> None:
        self.ws = ws
        self._channels = channels
        self._base64 = base64
        self._stream_close = stream_close
        self._buffered = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._readers: dict[int, ChannelReader] = {}
        for channel in readable:
            self._readers[channel] = ChannelReader(self)

    def reader(self, channel: int) -> ChannelReader:
        """The reader of a readable channel."""
        return self._readers[channel]

    def duplex(self, channel: int) -> ChannelDuplex:
        """Make ``channel`` readable and writable, replacing its plain reader."""
        duplex = ChannelDuplex(self, channel)
        self._readers[channel] = duplex
        return duplex

    def writer(self, channel: int) -> ChannelWriter:
        """A writer for ``channel``."""
        return ChannelWriter(self, channel)

    async def send(self, channel: int, data: bytes) -> None:
        """Send ``data`` on ``channel`` with the negotiated codec."""
        if self._base64:
            await self.ws.send(Opcode.TEXT, bytes([0x30 + channel]) + base64.b64encode(data))
        else:
            await self.ws.send(Opcode.BINARY, bytes([channel]) + data)

    async def run(self) -> None:
        """Dispatch client messages until the connection ends, then end every reader."""
        try:
            while True:
                if self._buffered > HIGH_WATER:
                    self._drained.clear()
                    await self._drained.wait()
                message = await self.ws.receive()
                if message is None or not self._dispatch(message.payload):
                    break
        finally:
            for reader in self._readers.values():
                reader.buffer.feed_eof()

    def _dispatch(self, data: bytes) -> bool:
        if not data:
            return True
        if self._stream_close and data[0] == STREAM_CLOSE:
            if len(data) != 2 or data[1] >= self._channels:
                log.debug("invalid websocket close signal %r", data)
                return False
            if (reader := self._readers.get(data[1])) is not None:
                reader.buffer.feed_eof()
            return True
        channel, payload = data[0], data[1:]
        if self._base64:
            channel -= 0x30
            try:
                payload = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                log.debug("undecodable base64 websocket message on channel %d", channel)
                return True
        reader = self._readers.get(channel)
        if reader is not None and 0 <= channel < self._channels:
            self._buffered += len(payload)
            reader.buffer.feed(payload)
        return True

    def _consumed(self, size: int) -> None:
        self._buffered = max(0, self._buffered - size)
        if self._buffered <= HIGH_WATER // 2:
            self._drained.set()
