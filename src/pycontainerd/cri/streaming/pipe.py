"""Small asyncio pieces shared by the SPDY and websocket drivers.

- :class:`InboundBuffer`: bytes a protocol driver received for one stream, read by the runtime.
  Reading reports consumption back to the driver, which turns it into SPDY window updates and
  resumes reading the socket once buffers drain.
- :class:`ResizeQueue`: the decoded terminal sizes of a resize stream, as an async iterator.
- :class:`ResizeDecoder`: a stream of concatenated JSON objects (what Go's ``json.Encoder``
  writes) decoded into :class:`~.api.TerminalSize`, fed in arbitrary chunks.
- :class:`IdleTimer`: closes a connection nobody used for a while (kubelet resets a deadline
  on every frame read or written).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import TYPE_CHECKING

from pycontainerd.cri.streaming.api import ByteReader, TerminalSize

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

_MAX_RESIZE_BUFFER = 4096  # a pending JSON value longer than this is garbage, not a slow client


class InboundBuffer:
    """An unbounded FIFO of received bytes with end-of-stream; the driver bounds it.

    Args:
        on_consumed: Called with the number of bytes each read took out (or discarded).
    """

    def __init__(self, on_consumed: Callable[[int], None] | None = None) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._discard = False
        self._waiter: asyncio.Future[None] | None = None
        self._on_consumed = on_consumed

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet."""
        return self._size

    @property
    def at_eof(self) -> bool:
        """Whether the sender finished and everything was read."""
        return self._eof and not self._size

    def feed(self, data: bytes) -> None:
        """Append received bytes (dropped once closed or discarding)."""
        if not data:
            return
        if self._eof or self._discard:
            self._consumed(len(data))
            return
        self._chunks.append(data)
        self._size += len(data)
        self._wake()

    def feed_eof(self) -> None:
        """Mark the end of the stream; readers get what is buffered, then ``b""``."""
        self._eof = True
        self._wake()

    def discard(self) -> None:
        """Drop what is buffered and everything fed later: nobody will read this stream."""
        self._discard = True
        dropped, self._size = self._size, 0
        self._chunks.clear()
        self._consumed(dropped)
        self._wake()

    async def read(self, n: int = 65536) -> bytes:
        """Return up to ``n`` bytes, waiting for some; ``b""`` at end of stream."""
        if n <= 0:
            return b""
        while not self._size and not self._eof and not self._discard:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if not self._size:
            return b""
        chunk = self._chunks.popleft()
        if len(chunk) > n:
            chunk, rest = chunk[:n], chunk[n:]
            self._chunks.appendleft(rest)
        self._size -= len(chunk)
        self._consumed(len(chunk))
        return chunk

    async def read_all(self, limit: int = 1 << 20) -> bytes:
        """Read until end of stream (at most ``limit`` bytes are kept)."""
        parts: list[bytes] = []
        size = 0
        while chunk := await self.read():
            if size < limit:
                parts.append(chunk[: limit - size])
                size += len(parts[-1])
        return b"".join(parts)

    def _consumed(self, n: int) -> None:
        if n and self._on_consumed is not None:
            self._on_consumed(n)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class ResizeDecoder:
    """Decode concatenated JSON ``{"Width": w, "Height": h}`` objects from byte chunks.

    Like Go's ``json.Decoder`` into ``TerminalSize``, field names match case-insensitively and
    unknown fields are ignored. Once the input stops being such objects the decoder gives up
    (kubelet stops reading the resize stream on its first decode error).
    """

    def __init__(self) -> None:
        self._text = ""
        self._pending = b""
        self._broken = False
        self._decoder = json.JSONDecoder()

    @property
    def broken(self) -> bool:
        """Whether invalid input was seen; later input is ignored."""
        return self._broken

    def feed(self, data: bytes) -> list[TerminalSize]:
        """Decode the sizes completed by ``data``."""
        if self._broken:
            return []
        raw = self._pending + data
        try:
            self._text += raw.decode()
            self._pending = b""
        except UnicodeDecodeError as exc:
            if exc.start < len(raw) - 3:
                self._broken = True
                return []
            self._text += raw[: exc.start].decode()
            self._pending = raw[exc.start :]
        sizes: list[TerminalSize] = []
        while True:
            text = self._text.lstrip()
            if not text:
                self._text = ""
                return sizes
            try:
                value, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError:
                self._text = text
                if len(text) > _MAX_RESIZE_BUFFER:
                    self._broken = True
                return sizes
            self._text = text[end:]
            size = _terminal_size(value)
            if size is None:
                self._broken = True
                return sizes
            sizes.append(size)


def _terminal_size(value: object) -> TerminalSize | None:
    if not isinstance(value, dict):
        return None
    fields = {str(k).lower(): v for k, v in value.items()}
    width, height = fields.get("width", 0), fields.get("height", 0)
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFF for v in (width, height)):
        return None
    return TerminalSize(width=width, height=height)


class ResizeQueue:
    """Terminal sizes for the runtime: an async iterator that ends when the source closes."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[TerminalSize | None] = asyncio.Queue()
        self._closed = False

    def put(self, size: TerminalSize) -> None:
        """Queue one size (ignored after :meth:`close`)."""
        if not self._closed:
            self._queue.put_nowait(size)

    def close(self) -> None:
        """End the iteration after the queued sizes."""
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[TerminalSize]:
        return self

    async def __anext__(self) -> TerminalSize:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # keep later iterations ended too
            raise StopAsyncIteration
        return item

    async def pump(self, source: ByteReader) -> None:
        """Decode sizes from ``source`` until it ends or turns invalid, then close."""
        decoder = ResizeDecoder()
        try:
            while not decoder.broken and (chunk := await source.read()):
                for size in decoder.feed(chunk):
                    self.put(size)
        finally:
            self.close()


class IdleTimer:
    """Call ``on_idle`` once ``timeout`` seconds pass without :meth:`touch`.

    Touching is cheap (it records the time); the single timer re-arms itself when it fires
    early, so a busy connection costs one timer callback per ``timeout``.

    Args:
        timeout: Seconds of allowed silence; None or 0 disables the timer.
        on_idle: Called once, from the event loop, when the connection went idle.
    """

    def __init__(self, timeout: float | None, on_idle: Callable[[], None]) -> None:
        self._timeout = timeout or None
        self._on_idle = on_idle
        self._last = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Arm the timer (a no-op when disabled or already armed)."""
        if self._timeout is not None and self._handle is None:
            self.touch()
            self._arm()

    def touch(self) -> None:
        """Record activity now."""
        self._last = asyncio.get_running_loop().time()

    def cancel(self) -> None:
        """Disarm the timer for good."""
        if self._handle is not None:
            self._handle.cancel()
        self._timeout = None

    def _arm(self) -> None:
        assert self._timeout is not None
        self._handle = asyncio.get_running_loop().call_at(self._last + self._timeout, self._fire)

    def _fire(self) -> None:
        if self._timeout is None:
            return
        if asyncio.get_running_loop().time() >= self._last + self._timeout:
            self._timeout = None
            self._on_idle()
        else:
            self._arm()
