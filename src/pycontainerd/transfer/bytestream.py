"""Byte streams over a named stream, with containerd's window flow control.

The reading side grants the writer credit with ``WindowUpdate`` messages (64 KiB at a time,
topped up whenever less than that is outstanding); the writing side sends ``Data`` messages
of at most 32 KiB and never more than its credit. Both ends interoperate with containerd's
client library.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from typing import TYPE_CHECKING, Any, TypeVar

from pycontainerd.aio import spawn
from pycontainerd.api.containerd.types.transfer import streaming_pb2 as tpb
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.streaming.manager import EndOfStream
from pycontainerd.typeurl import name_of, pack

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from pycontainerd.streaming.manager import Stream

T = TypeVar("T")
MAX_READ = 32 * 1024
WINDOW = 2 * MAX_READ
CLOSE_TIMEOUT = 5.0
DATA = tpb.Data.DESCRIPTOR.full_name
WINDOW_UPDATE = tpb.WindowUpdate.DESCRIPTOR.full_name


class ByteReader:
    """Reads the bytes a client sends on ``stream``; :meth:`read` returns b"" at the end."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._granted = 0
        self._buffer = bytearray()
        self._eof = False

    async def _grant(self) -> None:
        while self._granted < WINDOW:
            await self._stream.send(pack(tpb.WindowUpdate(update=WINDOW)))
            self._granted += WINDOW

    async def _fill(self) -> None:
        await self._grant()
        try:
            message = await self._stream.recv()
        except EndOfStream:
            self._eof = True
            return
        if name_of(message) != DATA:
            raise InvalidArgument(f"byte stream received {message.type_url}, expected {DATA}")
        data = tpb.Data.FromString(message.value).data
        self._granted -= len(data)
        self._buffer += data

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all remaining when negative); b"" at the end of the stream."""
        while not self._eof and (size < 0 or len(self._buffer) < size):
            await self._fill()
        if size < 0 or size >= len(self._buffer):
            out = bytes(self._buffer)
            self._buffer.clear()
        else:
            out = bytes(self._buffer[:size])
            del self._buffer[:size]
        return out


class ByteWriter:
    """Sends bytes to a client on ``stream`` as its ``WindowUpdate`` credit allows."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._credit = 0
        self._more = asyncio.Event()
        self._closed = False
        self._task = spawn(self._windows())

    async def _windows(self) -> None:
        while True:
            try:
                message = await self._stream.recv()
            except EndOfStream:
                self._closed = True
                self._more.set()
                return
            if name_of(message) == WINDOW_UPDATE:
                self._credit += tpb.WindowUpdate.FromString(message.value).update
                self._more.set()

    async def write(self, data: bytes) -> None:
        """Send all of ``data``, waiting for credit; raises EndOfStream if the client left."""
        view = memoryview(data)
        while view:
            while self._credit <= 0:
                if self._closed:
                    raise EndOfStream("client closed the stream")
                self._more.clear()
                await self._more.wait()
            n = min(len(view), MAX_READ, self._credit)
            await self._stream.send(pack(tpb.Data(data=bytes(view[:n]))))
            self._credit -= n
            view = view[n:]

    async def aclose(self) -> None:
        """Close the stream (the client sees its end), then let the credit reader finish.

        Cancelling that reader while it waits on the call could break the call; closing
        first ends its wait normally. Before closing, wait (briefly) until the reader has
        topped its credit back up: it grants more after each message, and a grant written
        after the call ends fails the client's side of the call."""
        deadline = asyncio.get_running_loop().time() + CLOSE_TIMEOUT
        while self._credit < WINDOW and not self._closed:
            self._more.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._more.wait(), remaining)
        self._stream.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), CLOSE_TIMEOUT)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class LoopBridge:
    """Lets a worker thread run a function on the event loop and wait for its result."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async def run() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def wait(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()


class BlockingReader(io.RawIOBase):
    """A blocking raw file over a :class:`ByteReader`, for a worker thread (wrap it in a
    ``BufferedReader`` for ``peek`` and efficient small reads)."""

    def __init__(self, bridge: LoopBridge, reader: ByteReader) -> None:
        self._bridge = bridge
        self._reader = reader

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._bridge.wait(self._reader.read(len(buffer)))
        buffer[: len(data)] = data
        return len(data)
