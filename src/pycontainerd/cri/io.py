"""Container and exec stdio through FIFOs the shim opens.

The daemon makes the FIFOs, opens its ends first and hands the paths to the shim. Reading a
FIFO that no writer has opened yet returns EOF at once, so each output FIFO is also held open
for writing by us until the shim has opened its end (:meth:`FifoPump.release_hold`); after
that EOF means the process closed its output. Outputs go to the CRI log file and to whoever
attached; stdin comes from attach and exec sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from pycontainerd.cri.logs import LineSplitter, LogFile

READ_CHUNK = 64 * 1024

OnData = Callable[[str, bytes], None]


def make_fifo(path: Path) -> None:
    """A FIFO at ``path`` (replacing a stale one)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.mkfifo(path, 0o600)


class FifoPump:
    """Reads one output FIFO in the event loop and hands every chunk to ``on_data``."""

    def __init__(self, path: Path, stream: str, on_data: OnData, *, hold: bool = True) -> None:
        self.stream = stream
        self._on_data = on_data
        self._loop = asyncio.get_running_loop()
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._hold = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC) if hold else -1
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._loop.add_reader(self._fd, self._readable)

    def release_hold(self) -> None:
        """Drop our write end: from now on EOF means the shim's writers are gone."""
        if self._hold >= 0:
            os.close(self._hold)
            self._hold = -1

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._on_data(self.stream, data)
            return
        if self._hold >= 0:
            return  # cannot happen while we hold a writer; be safe anyway
        self._finish()

    def _finish(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        """Stop reading (what is in the pipe is read first)."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                while data := os.read(self._fd, READ_CHUNK):
                    self._on_data(self.stream, data)
        self.release_hold()
        self._finish()


class StdinWriter:
    """The write end of a stdin FIFO, written without blocking the loop."""

    def __init__(self, path: Path) -> None:
        # O_RDWR: opening a FIFO for writing alone fails (ENXIO) while the shim has not opened it.
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._loop = asyncio.get_running_loop()

    @property
    def closed(self) -> bool:
        """Whether stdin has been closed."""
        return self._fd < 0

    async def write(self, data: bytes) -> None:
        """Write all of ``data``, waiting while the pipe is full."""
        view = memoryview(data)
        while view and self._fd >= 0:
            try:
                n = os.write(self._fd, view)
                view = view[n:]
            except BlockingIOError:
                ready = self._loop.create_future()
                self._loop.add_writer(self._fd, ready.set_result, None)
                try:
                    await ready
                finally:
                    if self._fd >= 0:
                        self._loop.remove_writer(self._fd)
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    return
                raise

    def close(self) -> None:
        """Close stdin: the process reads EOF once the shim's copy of the write end is gone."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class ContainerIO:
    """A container's stdio: outputs to the CRI log and to attached sessions, stdin from attach."""

    def __init__(self, directory: Path, *, stdin: bool, tty: bool, log_path: str, max_line: int) -> None:
        self.directory = directory
        self.tty = tty
        self.log = LogFile(log_path)
        self._max_line = max_line
        self.stdin_path = str(directory / "stdin") if stdin else ""
        self.stdout_path = str(directory / "stdout")
        self.stderr_path = "" if tty else str(directory / "stderr")
        self._pumps: list[FifoPump] = []
        self._splitters: dict[str, LineSplitter] = {}
        self.stdin: StdinWriter | None = None
        self.subscribers: set[OnData] = set()

    def open(self, *, hold: bool = True) -> None:
        """Make (unless present) and open the FIFOs; ``hold`` for a process not yet created."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in (self.stdin_path, self.stdout_path, self.stderr_path):
            if path and (hold or not Path(path).exists()):
                make_fifo(Path(path))
        for stream, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            if path:
                self._splitters[stream] = LineSplitter(stream, self._max_line)
                self._pumps.append(FifoPump(Path(path), stream, self._on_data, hold=hold))
        if self.stdin_path:
            self.stdin = StdinWriter(Path(self.stdin_path))

    def release_hold(self) -> None:
        """The shim has opened its ends."""
        for pump in self._pumps:
            pump.release_hold()

    def _on_data(self, stream: str, data: bytes) -> None:
        try:
            self.log.write(self._splitters[stream].feed(data))
        except OSError:
            pass  # a full disk must not stop the container; kubelet sees the log stall
        for subscriber in list(self.subscribers):
            subscriber(stream, data)

    async def wait_closed(self) -> None:
        """Until every output has reached EOF."""
        await asyncio.gather(*(pump.closed for pump in self._pumps))

    def close(self) -> None:
        """Flush partial lines, stop reading, close the log and stdin."""
        for pump in self._pumps:
            pump.close()
        for splitter in self._splitters.values():
            with contextlib.suppress(OSError):
                self.log.write(splitter.close())
        self.log.close()
        if self.stdin is not None:
            self.stdin.close()

    def remove(self) -> None:
        """Close and delete the FIFO directory."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)
