"""Stdio of a container process: pipes the shim pumps to and from the client's FIFOs.

Why pipes and not the FIFOs themselves: CRIU can only checkpoint descriptors it can find again.
A FIFO under the client's directory (``/run/containerd/fifo/...``) lives outside the container's
mount namespace, so ``criu dump`` fails ("Can't lookup mount ... path=<fifo>"). An anonymous pipe
is fine: runc records it as ``pipe:[inode]`` in ``descriptors.json`` and, on restore, hands
CRIU whatever stdio ``runc restore`` itself has (``--inherit-fd``). This is also what the Go
shim does.

Rules:

1. The container end of each pipe is given to runc and closed here as soon as runc has handed it
   on (:meth:`ProcessIO.handed_over`); from then on an output pipe reaches EOF exactly when the
   last process holding it exits, which is when its pump ends.
2. Client FIFOs are opened ``O_RDWR | O_NONBLOCK``: the shim never blocks waiting for a reader or
   a writer, and a FIFO nobody reads simply fills up (the container then blocks on write, as it
   would writing to the FIFO directly).
3. Paths that are not FIFOs (a log file) are opened and given to the container directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from typing import TYPE_CHECKING

from pycontainerd.aio import spawn
from pycontainerd.runc_shim.runc import Stdio

if TYPE_CHECKING:
    from collections.abc import Iterator

CHUNK = 64 * 1024
DRAIN_TIMEOUT = 5.0


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


async def _ready(fd: int, *, writable: bool) -> None:
    """Wait until ``fd`` can be read (or written) without blocking."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await fut
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _write_all(fd: int, data: bytes) -> bool:
    """Write everything to a non-blocking ``fd``; False if it is broken."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _ready(fd, writable=True)
        except OSError:
            return False
    return True


async def pump(src: int, dst: int) -> None:
    """Copy from the non-blocking ``src`` to the non-blocking ``dst`` until EOF or an error."""
    while True:
        try:
            data = os.read(src, CHUNK)
        except BlockingIOError:
            await _ready(src, writable=False)
            continue
        except OSError:
            return
        if not data or not await _write_all(dst, data):
            return


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel a pump and wait until it has let go of its descriptors (before they are closed)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _drain_now(src: int, dst: int) -> None:
    """Move what ``src`` holds right now to ``dst`` (best effort, never waits)."""
    with contextlib.suppress(OSError):
        while data := os.read(src, CHUNK):
            os.write(dst, data)


class ProcessIO:
    """The stdio of one process: what runc gets, and the pumps that serve the client's paths.

    Use: ``io = ProcessIO.open(stdin, stdout, stderr)``; pass ``io.stdio`` to runc create,
    exec or restore; then :meth:`handed_over` (starts the pumps); :meth:`close_stdin` for
    CloseIO; :meth:`close` when the process is deleted. :meth:`abort` undoes a failed start.
    """

    def __init__(self) -> None:
        self.stdio = Stdio()
        self._theirs: list[int] = []  # container ends, closed once runc has them
        self._ours: list[int] = []  # client paths and shim ends of the pipes
        self._stdin: tuple[int, int] | None = None  # (client fifo, pipe write end)
        self._outputs: list[tuple[int, int]] = []  # (pipe read end, client fifo)
        self._stdin_task: asyncio.Task[None] | None = None
        self._output_tasks: list[asyncio.Task[None]] = []

    @classmethod
    def open(cls, stdin: str, stdout: str, stderr: str, *, owner: tuple[int, int] | None = None) -> ProcessIO:
        """Open the client's paths and make the pipes (nothing runs yet).

        ``owner`` (the runc options' ``IoUid``/``IoGid``) gets the container's ends of the
        pipes: a process in a user namespace can then reopen them (``/dev/stdout`` is
        ``/proc/self/fd/1``), which a pipe owned by host root forbids.
        """
        io = cls()
        try:
            io.stdio = Stdio(io._input(stdin), io._output(stdout), io._output(stderr))
            if owner is not None and owner != (0, 0):
                for fd in (io.stdio.stdin, io.stdio.stdout, io.stdio.stderr):
                    if fd is not None and stat.S_ISFIFO(os.fstat(fd).st_mode):
                        os.fchown(fd, *owner)
        except BaseException:
            io.abort()
            raise
        return io

    def _own(self, fd: int) -> int:
        self._ours.append(fd)
        return fd

    def _give(self, fd: int) -> int:
        self._theirs.append(fd)
        return fd

    def _input(self, path: str) -> int | None:
        if not path:
            return None
        if not _is_fifo(path):
            return self._give(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        fifo = self._own(os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC))
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        self._give(read_end)
        os.set_blocking(self._own(write_end), False)
        self._stdin = (fifo, write_end)
        return read_end

    def _output(self, path: str) -> int | None:
        if not path:
            return None
        if not _is_fifo(path):
            return self._give(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600))
        fifo = self._own(os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC))
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        self._give(write_end)
        os.set_blocking(self._own(read_end), False)
        self._outputs.append((read_end, fifo))
        return write_end

    def handed_over(self) -> None:
        """runc has given the container its ends: drop ours and start pumping."""
        self._close_theirs()
        if self._stdin is not None:
            self._stdin_task = spawn(pump(*self._stdin), name="stdin")
        self._output_tasks = [spawn(pump(src, dst), name="output") for src, dst in self._outputs]

    def _close_theirs(self) -> None:
        for fd in self._theirs:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._theirs.clear()

    async def close_stdin(self) -> None:
        """The client closed stdin: forward what is buffered, then the process reads EOF."""
        if self._stdin is None:
            return
        fifo, write_end = self._stdin
        self._stdin = None
        if self._stdin_task is not None:
            await _stop(self._stdin_task)
            self._stdin_task = None
        with contextlib.suppress(OSError):
            os.set_blocking(write_end, True)
        _drain_now(fifo, write_end)
        self._close(write_end)

    def _close(self, fd: int) -> None:
        if fd in self._ours:
            self._ours.remove(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    async def close(self, timeout: float = DRAIN_TIMEOUT) -> None:  # noqa: ASYNC109 - a drain bound, not an API timeout
        """Let the output pumps reach EOF (bounded: a leftover process may hold a pipe), then close."""
        if self._stdin_task is not None:
            await _stop(self._stdin_task)
            self._stdin_task = None
        if self._output_tasks:
            _, pending = await asyncio.wait(self._output_tasks, timeout=timeout)
            for task in pending:
                await _stop(task)
            self._output_tasks = []
        self.abort()

    def abort(self) -> None:
        """Close every descriptor now: a failed create (no pump runs yet), or the end of :meth:`close`."""
        for task in [*self._output_tasks, *([self._stdin_task] if self._stdin_task else [])]:
            task.cancel()  # not expected here: pumps are stopped by close() first
        self._close_theirs()
        for fd in list(self._ours):
            self._close(fd)
        self._stdin = None
        self._outputs = []

    def fds(self) -> Iterator[int]:
        """Descriptors the shim holds (for tests)."""
        yield from self._ours
        yield from self._theirs
