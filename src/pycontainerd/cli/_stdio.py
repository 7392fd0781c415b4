"""A process's stdio on this terminal: FIFOs for the shim, pumps to and from our own fds.

Output: :class:`~pycontainerd.client.cio.FifoReader` hands each chunk straight to fd 1 / 2.
Input: a daemon thread copies fd 0 into the stdin FIFO (a plain ``read`` works for ttys, pipes
and files alike, where an event loop cannot watch a regular file); at end of input the process's
stdin is closed through the daemon (CloseIO), since the shim holds the FIFO open itself.
With ``-t`` our terminal goes raw and its size follows the window (ResizePty).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import signal
import sys
import tempfile
import termios
import threading
import tty
from typing import TYPE_CHECKING, Any

from pycontainerd.client.cio import FifoReader
from pycontainerd.client.tasks import IO

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from pycontainerd.client.tasks import Tasks

DEFAULT_FIFO_DIR = "/run/pycontainerd/fifo"
OUTPUT_GRACE = 2.0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)


class Stdio:
    """The FIFOs of one process (in a fresh directory under ``fifo_dir``) and their pumps.

    ``keep``: leave the FIFOs in place when done (a detached task, attached to later).
    """

    def __init__(self, fifo_dir: str = "", *, terminal: bool = False, stdin: bool = True, keep: bool = False) -> None:
        base = fifo_dir or DEFAULT_FIFO_DIR
        os.makedirs(base, mode=0o700, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="pyctr-", dir=base)
        self.terminal = terminal
        self.keep = keep
        names = (["stdin"] if stdin else []) + ["stdout"] + ([] if terminal else ["stderr"])
        for name in names:
            os.mkfifo(os.path.join(self.dir, name), 0o600)
        path = {n: os.path.join(self.dir, n) for n in names}
        self.io = IO(path.get("stdin", ""), path["stdout"], path.get("stderr", ""), terminal)


class Pumps:
    """Copies between a process's FIFOs and our fds 0, 1 and 2 while it runs."""

    def __init__(self, io: IO, *, forward_stdin: bool = True) -> None:
        self.io = io
        self._readers: list[FifoReader] = []
        self._stdin_fd = -1
        self._saved_tty: list[Any] | None = None
        self._forward_stdin = forward_stdin and bool(io.stdin)
        out = sys.stdout.fileno()
        err = sys.stderr.fileno()
        self._readers.append(FifoReader(io.stdout, lambda data: _write_all(out, data)))
        if io.stderr:
            self._readers.append(FifoReader(io.stderr, lambda data: _write_all(err, data)))
        if self._forward_stdin:
            # O_RDWR: never blocks, whether or not the shim has opened its end yet.
            self._stdin_fd = os.open(io.stdin, os.O_RDWR | os.O_CLOEXEC)

    def start_stdin(self, on_eof: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Copy fd 0 to the stdin FIFO in a daemon thread; at its end, run ``on_eof`` in the loop."""
        if self._stdin_fd < 0:
            return
        loop = asyncio.get_running_loop()
        fd = self._stdin_fd

        def pump() -> None:
            try:
                while data := os.read(0, 65536):
                    _write_all(fd, data)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    os.close(fd)
                with contextlib.suppress(RuntimeError):  # the loop is gone: we are exiting anyway
                    loop.call_soon_threadsafe(lambda: _spawn(on_eof()))

        self._stdin_fd = -1
        threading.Thread(target=pump, name="stdin", daemon=True).start()

    def raw_terminal(self) -> None:
        """Put our terminal in raw mode (restored by :meth:`close`), when stdin is one."""
        if sys.stdin.isatty():
            self._saved_tty = termios.tcgetattr(0)
            tty.setraw(0)

    async def drain(self, grace: float = OUTPUT_GRACE) -> None:
        """Wait for the rest of the output (call once the process has exited)."""
        for reader in self._readers:
            await reader.result(grace)

    def close(self) -> None:
        """Stop the pumps; restore the terminal."""
        for reader in self._readers:
            reader.close()
        if self._stdin_fd >= 0:
            os.close(self._stdin_fd)
            self._stdin_fd = -1
        if self._saved_tty is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self._saved_tty)
            self._saved_tty = None


def _spawn_send(send: Callable[[int], Coroutine[Any, Any, None]], sig: int) -> None:
    _spawn(send(sig))


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    from pycontainerd.aio import spawn

    spawn(coro)


def remove_fifos(stdio: Stdio) -> None:
    """Remove the FIFO directory (unless kept)."""
    if stdio.dir and not stdio.keep:
        shutil.rmtree(stdio.dir, ignore_errors=True)


def follow_window(tasks: Tasks, container_id: str, exec_id: str = "") -> None:
    """Tell the process our terminal's size now and whenever the window changes."""
    if not sys.stdout.isatty():
        return

    async def resize() -> None:
        size = os.get_terminal_size(sys.stdout.fileno())
        with contextlib.suppress(Exception):
            await tasks.resize_pty(container_id, size.columns, size.lines, exec_id)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGWINCH, lambda: _spawn(resize()))
    _spawn(resize())


def forward_signals(tasks: Tasks, container_id: str, exec_id: str = "") -> None:
    """Send SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 we receive on to the process."""

    async def send(sig: int) -> None:
        with contextlib.suppress(Exception):
            await tasks.kill(container_id, sig, exec_id=exec_id)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        loop.add_signal_handler(sig, _spawn_send, send, int(sig))
