"""The CRI service as the streaming server's :class:`~pycontainerd.cri.streaming.api.Runtime`:
exec, attach and port-forward sessions reach :mod:`.execs`, and the server's one-time URLs are
what the Exec, Attach and PortForward RPCs answer."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from pycontainerd.cri import execs
from pycontainerd.cri.streaming.api import (
    AttachRequest,
    ByteReader,
    ByteWriter,
    DuplexStream,
    ExecRequest,
    PortForwardRequest,
    Streams,
    TerminalSize,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pycontainerd.cri.service import CRIService

CHUNK = 64 * 1024


async def _chunks(reader: ByteReader) -> AsyncIterator[bytes]:
    while data := await reader.read(CHUNK):
        yield data


async def _sizes(resize: AsyncIterator[TerminalSize]) -> AsyncIterator[tuple[int, int]]:
    async for size in resize:
        yield size.width, size.height


def _writer_for(streams: Streams) -> execs.OnOutput:
    async def write(stream: str, data: bytes) -> None:
        target: ByteWriter | None = streams.stdout if stream == "stdout" or streams.tty else streams.stderr
        if target is not None:
            with contextlib.suppress(ConnectionError):
                await target.write(data)

    return write


class CRIStreamingRuntime:
    """Exec, attach and port forward for the streaming server, on the CRI service."""

    def __init__(self, svc: CRIService) -> None:
        self._svc = svc

    async def exec(self, container_id: str, cmd: list[str], streams: Streams) -> int:
        """Run ``cmd`` in the container with the client's stdio; its exit code."""
        return await execs.run_exec(
            self._svc,
            container_id,
            cmd,
            tty=streams.tty,
            stdin=_chunks(streams.stdin) if streams.stdin is not None else None,
            on_output=_writer_for(streams),
            resize=_sizes(streams.resize) if streams.tty else None,
        )

    async def attach(self, container_id: str, streams: Streams) -> None:
        """Join the container's stdio."""
        await execs.attach(
            self._svc,
            container_id,
            stdin=_chunks(streams.stdin) if streams.stdin is not None else None,
            on_output=_writer_for(streams),
            resize=_sizes(streams.resize) if streams.tty else None,
        )

    async def port_forward(self, pod_sandbox_id: str, port: int, stream: DuplexStream) -> None:
        """Copy bytes between the client and ``localhost:port`` in the pod."""
        reader, writer = await execs.port_forward(self._svc, pod_sandbox_id, port)

        async def upstream() -> None:
            async for chunk in _chunks(stream):
                writer.write(chunk)
                await writer.drain()
            with contextlib.suppress(OSError):
                writer.write_eof()

        async def downstream() -> None:
            while data := await reader.read(CHUNK):
                await stream.write(data)
            await stream.close()

        try:
            await asyncio.gather(upstream(), downstream())
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class StreamURLs:
    """What the CRI RPCs need of the streaming server: a URL per request."""

    def __init__(self, server: Any) -> None:
        self.server = server

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return str(self.server.base_url)

    def exec_url(self, request: Any) -> str:
        """The one-time URL of an exec session."""
        return str(self.server.get_exec(ExecRequest.from_message(request)))

    def attach_url(self, request: Any) -> str:
        """The one-time URL of an attach session."""
        return str(self.server.get_attach(AttachRequest.from_message(request)))

    def port_forward_url(self, request: Any) -> str:
        """The one-time URL of a port-forward session."""
        return str(self.server.get_port_forward(PortForwardRequest.from_message(request)))

    async def stop(self) -> None:
        """Close every session and the listener."""
        await self.server.stop()


async def start_streaming(svc: CRIService) -> StreamURLs:
    """Start the streaming server on ``stream_server_address:stream_server_port``."""
    from pycontainerd.cri.streaming import StreamingServer

    server = StreamingServer(
        CRIStreamingRuntime(svc),
        address=svc.config.stream_server_address,
        port=int(svc.config.stream_server_port),
        idle_timeout=svc.config.stream_idle_seconds or None,
    )
    await server.start()
    return StreamURLs(server)
