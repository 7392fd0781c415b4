"""A real in-process Runtime for the streaming server, and the servers it talks to.

:class:`LocalRuntime` runs commands as local subprocesses (pipes, or a real pseudo-terminal for
``tty``), attaches by running ``cat``, and forwards ports to ``127.0.0.1``. Nothing is mocked:
output, exit codes, terminal merging and resizes come from the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from pycontainerd.aio import spawn
from pycontainerd.cri.streaming import StreamingConfig, StreamingServer
from pycontainerd.cri.streaming.api import ByteReader, ByteWriter, DuplexStream, Streams, TerminalSize
from pycontainerd.errdefs import NotFound

T = TypeVar("T")

CONTAINER = "ctr-1"
POD = "pod-1"


def run(coro: Coroutine[Any, Any, T], limit: float = 60.0) -> T:
    """Run one test coroutine with an overall time limit."""

    async def limited() -> T:
        async with asyncio.timeout(limit):
            return await coro

    return asyncio.run(limited())


class LocalRuntime:
    """The :class:`~pycontainerd.cri.streaming.api.Runtime` of a pretend node whose containers are local processes."""

    def __init__(self) -> None:
        self.containers = {CONTAINER}
        self.pods = {POD}
        self.resizes: list[TerminalSize] = []
        self.cancelled = 0
        self.started = asyncio.Event()
        self.cancellation = asyncio.Event()
        self.processes = 0
        self._progress = asyncio.Condition()

    async def wait_processes(self, count: int) -> None:
        """Wait until ``count`` processes were started."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.processes >= count)

    async def _started(self) -> None:
        self.started.set()
        async with self._progress:
            self.processes += 1
            self._progress.notify_all()

    async def exec(self, container_id: str, cmd: list[str], streams: Streams) -> int:
        if container_id not in self.containers:
            raise NotFound(f"container {container_id!r} not found")
        try:
            if streams.tty:
                return await _run_tty(cmd, streams, self)
            return await _run_pipes(cmd, streams, self)
        except asyncio.CancelledError:
            self.cancelled += 1
            self.cancellation.set()
            raise

    async def attach(self, container_id: str, streams: Streams) -> None:
        await self.exec(container_id, ["cat"], streams)

    async def port_forward(self, pod_sandbox_id: str, port: int, stream: DuplexStream) -> None:
        if pod_sandbox_id not in self.pods:
            raise NotFound(f"pod {pod_sandbox_id!r} not found")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(_to_socket(stream, writer))
                group.create_task(_from_socket(reader, stream))
        finally:
            writer.close()


async def _to_socket(stream: ByteReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await stream.read():
        writer.write(chunk)
        await writer.drain()
    writer.write_eof()


async def _from_socket(reader: asyncio.StreamReader, stream: ByteWriter) -> None:
    while chunk := await reader.read(65536):
        await stream.write(chunk)
    await stream.close()


async def _record(runtime: LocalRuntime, sizes: AsyncIterator[TerminalSize], master: int | None) -> None:
    async for size in sizes:
        runtime.resizes.append(size)
        if master is not None:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))


async def _run_pipes(cmd: list[str], streams: Streams, runtime: LocalRuntime) -> int:
    pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=pipe if streams.stdin else null,
        stdout=pipe if streams.stdout else null,
        stderr=pipe if streams.stderr else null,
    )
    await runtime._started()
    side = [spawn(_record(runtime, streams.resize, None))]
    try:
        if streams.stdin is not None and proc.stdin is not None:
            side.append(spawn(_feed(streams.stdin, proc.stdin)))
        async with asyncio.TaskGroup() as group:
            for source, sink in ((proc.stdout, streams.stdout), (proc.stderr, streams.stderr)):
                if source is not None and sink is not None:
                    group.create_task(_drain(source, sink))
        return await proc.wait()
    finally:
        for task in side:
            task.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _feed(source: ByteReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await source.read():
            sink.write(chunk)
            await sink.drain()
        sink.close()


async def _drain(source: asyncio.StreamReader, sink: ByteWriter) -> None:
    while chunk := await source.read(65536):
        await sink.write(chunk)


async def _run_tty(cmd: list[str], streams: Streams, runtime: LocalRuntime) -> int:
    master, slave = os.openpty()
    os.set_blocking(master, False)
    loop = asyncio.get_running_loop()
    output: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            output.put_nowait(os.read(master, 65536))
        except OSError:  # EIO: every slave descriptor is closed
            loop.remove_reader(master)
            output.put_nowait(b"")

    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
    finally:
        os.close(slave)
    await runtime._started()
    loop.add_reader(master, readable)
    side = [spawn(_record(runtime, streams.resize, master))]
    if streams.stdin is not None:
        side.append(spawn(_feed_tty(streams.stdin, master)))
    try:
        while chunk := await output.get():
            if streams.stdout is not None:
                await streams.stdout.write(chunk)
        return await proc.wait()
    finally:
        for task in side:
            task.cancel()
        loop.remove_reader(master)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(master)


async def _feed_tty(source: ByteReader, master: int) -> None:
    while chunk := await source.read():
        os.write(master, chunk)  # small interactive input: the pty buffer has room


@asynccontextmanager
async def serving(
    runtime: LocalRuntime | None = None, *, clock: Callable[[], float] | None = None, **config: Any
) -> AsyncIterator[StreamingServer]:
    """A started streaming server on 127.0.0.1 with a free port."""
    server = StreamingServer(runtime or LocalRuntime(), StreamingConfig(**config), clock=clock or _now)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _now() -> float:
    return asyncio.get_running_loop().time()


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A TCP echo server on 127.0.0.1; yields its port. It half-closes after the client does."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def free_port() -> int:
    """A local port nobody listens on (for connection-refused cases)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
