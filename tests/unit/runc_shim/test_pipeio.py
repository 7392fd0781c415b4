"""ProcessIO: the container gets pipes, the shim pumps them to and from the client's FIFOs."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from typing import TYPE_CHECKING

from pycontainerd.runc_shim.pipeio import ProcessIO

if TYPE_CHECKING:
    from pathlib import Path


def _is_pipe(fd: int) -> bool:
    return stat.S_ISFIFO(os.fstat(fd).st_mode)


def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def _read_exactly(fd: int, size: int) -> bytes:
    os.set_blocking(fd, True)
    out = bytearray()
    while len(out) < size:
        chunk = os.read(fd, size - len(out))
        assert chunk, "EOF before all bytes arrived"
        out += chunk
    return bytes(out)


def test_output_reaches_the_fifo_in_order_and_close_drains(tmp_path: Path) -> None:
    fifo = tmp_path / "stdout"
    os.mkfifo(fifo)
    payload = os.urandom(1 << 20)  # far more than a pipe or a FIFO buffers
    before = _open_fds()

    async def main() -> bytes:
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        io = ProcessIO.open("", str(fifo), "")
        assert io.stdio.stdin is None and io.stdio.stderr is None
        assert io.stdio.stdout is not None and _is_pipe(io.stdio.stdout)
        container_end = os.dup(io.stdio.stdout)  # what runc hands to the container
        io.handed_over()

        def container() -> None:
            view = memoryview(payload)
            while view:
                view = view[os.write(container_end, view) :]
            os.close(container_end)  # the process exits: EOF for the pump

        writer = threading.Thread(target=container)
        writer.start()
        received = await asyncio.to_thread(_read_exactly, reader, len(payload))
        writer.join()
        await io.close()
        os.close(reader)
        return received

    assert asyncio.run(main()) == payload
    assert _open_fds() <= before, "every descriptor is closed"


def test_close_stdin_forwards_what_is_buffered_then_eof(tmp_path: Path) -> None:
    fifo = tmp_path / "stdin"
    os.mkfifo(fifo)

    async def main() -> bytes:
        io = ProcessIO.open(str(fifo), "", "")
        assert io.stdio.stdin is not None and _is_pipe(io.stdio.stdin)
        container_end = os.dup(io.stdio.stdin)
        io.handed_over()
        client = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(client, b"first ")
        await asyncio.sleep(0.05)  # the pump forwards while the process runs
        os.write(client, b"and last")
        os.close(client)
        await io.close_stdin()  # the client's CloseIO: the process must now read EOF
        os.set_blocking(container_end, True)
        data = b""
        while chunk := await asyncio.to_thread(os.read, container_end, 1024):
            data += chunk
        os.close(container_end)
        await io.close()
        return data

    assert asyncio.run(main()) == b"first and last"


def test_plain_files_are_given_directly_and_empty_paths_get_nothing(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    io = ProcessIO.open("", str(log), "")
    assert io.stdio.stdout is not None and stat.S_ISREG(os.fstat(io.stdio.stdout).st_mode)
    os.write(io.stdio.stdout, b"appended\n")
    io.abort()
    assert log.read_bytes() == b"appended\n"
    assert list(io.fds()) == []


def test_abort_closes_everything_before_anything_ran(tmp_path: Path) -> None:
    for name in ("in", "out", "err"):
        os.mkfifo(tmp_path / name)
    before = _open_fds()
    io = ProcessIO.open(str(tmp_path / "in"), str(tmp_path / "out"), str(tmp_path / "err"))
    assert len(list(io.fds())) == 9  # three FIFOs, three pipes
    io.abort()
    assert list(io.fds()) == []
    assert _open_fds() == before
