"""Process I/O over FIFOs, client side: the shim writes a process's output into FIFOs we read.

containerd's ``cio`` package does this for Go clients: the client makes the FIFOs, names them in
the task (or exec) request and reads them; the shim opens their other ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class FifoReader:
    """Reads what is written to a FIFO until its writer (the shim) closes it.

    Opened without blocking before the shim opens the write end. With ``sink``, each chunk is
    handed on as it arrives (a terminal's stdout); without, chunks are kept for :meth:`result`.
    """

    def __init__(self, path: str, sink: Callable[[bytes], None] | None = None) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._sink = sink
        self._chunks: list[bytes] = []
        self._writer_seen = False
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        self._loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        if data:
            self._writer_seen = True
            self._take(data)
        elif self._writer_seen and not self._done.done():
            self._done.set_result(None)  # EOF after a writer: all of it
        elif not self._writer_seen:
            # No writer yet (EOF on an unopened FIFO): stop polling a bit, then look again.
            self._loop.remove_reader(self._fd)
            self._loop.call_later(0.01, self._rearm)

    def _take(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink(data)
        else:
            self._chunks.append(data)

    def _rearm(self) -> None:
        if self._fd >= 0 and not self._done.done():
            self._loop.add_reader(self._fd, self._readable)

    def _hung_up(self) -> bool:
        """Whether a writer opened the FIFO and closed it since (Linux reports POLLHUP on a FIFO
        only after a writer has come and gone, never before the first one)."""
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLHUP)
        return any(event & select.POLLHUP for _, event in poller.poll(0))

    async def result(self, grace: float) -> bytes:
        """The bytes (none with a sink), once the writer closed, or after ``grace`` seconds
        (call it when the process has ended)."""
        deadline = self._loop.time() + grace
        # POLLHUP has no event to wait on: look every 10 ms.
        while not self._done.done() and not self._hung_up() and self._loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        with contextlib.suppress(BlockingIOError, OSError):
            while data := os.read(self._fd, 65536):
                self._take(data)
        return b"".join(self._chunks)

    def close(self) -> None:
        """Stop reading and close the FIFO."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
