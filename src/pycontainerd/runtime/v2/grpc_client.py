"""A shim's Task API over gRPC: the connection behind :class:`~pycontainerd.runtime.v2.shim.ShimClient`
for shims whose bootstrap says ``"protocol": "grpc"``.

It offers what the ttrpc client offers the shim client (``call``, ``close``, ``wait_closed``), so
the task manager and the Tasks service do not know which protocol a shim speaks. The shim's
socket is a unix socket; its address comes plain (``/run/.../sock``, as containerd's Go shims
print it) or as ``unix://...``.

gRPC has no "connection closed" callback. A grpc channel goes back to IDLE when its connection
drops; the watcher then tries the socket directly: a shim that refuses connections is gone, one
that accepts is still there (the channel only idled) and the channel reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from pycontainerd.aio import spawn
from pycontainerd.errdefs import Unavailable
from pycontainerd.runtime.v2.errors import from_status

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from google.protobuf.message import Message

log = logging.getLogger(__name__)

# ctr and containerd use 16 MiB messages; a shim's replies (Pids, Stats) stay far below.
MAX_MESSAGE = 16 << 20
DIAL_TIMEOUT = 10.0
# Keep the channel connected while the shim lives: an idle channel would look like a dead shim
# to the watcher (it checks the socket then, so this only saves needless checks).
_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.client_idle_timeout_ms", 2**31 - 1),
    ("grpc.enable_retries", 0),
)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


async def socket_accepts(path: str, timeout: float = 2.0) -> bool:  # noqa: ASYNC109
    """Whether something accepts connections on the unix socket ``path``."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


class GrpcConnection:
    """One gRPC channel to a shim's unix socket, with ttrpc-client-like calls."""

    def __init__(self, path: str, channel: grpc.aio.Channel) -> None:
        self._path = path
        self._channel = channel
        self._methods: dict[tuple[str, str, type[Any]], Callable[..., Any]] = {}
        self._closed = asyncio.Event()
        self._close_reason = ""
        self._watcher = spawn(self._watch(), name=f"grpc-shim-watch-{path}")

    @classmethod
    async def connect(cls, path: str, *, timeout: float = DIAL_TIMEOUT) -> GrpcConnection:  # noqa: ASYNC109
        """Connect to the shim listening on ``path``.

        Like containerd, try the socket first: a dead shim's socket refuses at once, where a
        channel would keep retrying until its deadline.

        Raises:
            Unavailable: If nothing accepts connections on ``path`` or the channel does not
                become ready within ``timeout``.
        """
        loop = asyncio.get_running_loop()
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        probe.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(probe, path), timeout)
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"grpc: dial unix {path}: {exc or 'timeout'}") from exc
        finally:
            probe.close()
        channel = grpc.aio.insecure_channel(f"unix://{path}", options=_CHANNEL_OPTIONS)
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout)
        except (TimeoutError, grpc.aio.AioRpcError) as exc:
            await channel.close()
            raise Unavailable(f"grpc: shim at {path} did not become ready") from exc
        return cls(path, channel)

    async def call(
        self,
        service: str,
        method: str,
        request: Message,
        response_cls: type[Any],
        *,
        metadata: Mapping[str, Sequence[str]] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the deadline travels with the call
    ) -> Any:
        """One unary call; a non-OK status is raised as its errdefs kind.

        Raises:
            Unavailable: If the connection is closed or the shim cannot be reached.
        """
        if self._closed.is_set():
            raise Unavailable(f"grpc: {self._close_reason}")
        key = (service, method, response_cls)
        stub = self._methods.get(key)
        if stub is None:
            stub = self._channel.unary_unary(
                f"/{service}/{method}", request_serializer=_serialize, response_deserializer=response_cls.FromString
            )
            self._methods[key] = stub
        pairs = [(k, v) for k, values in (metadata or {}).items() for v in values]
        try:
            return await stub(request, metadata=pairs, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            raise from_status(code.value[0], exc.details() or code.name.lower()) from exc
        except grpc.aio.UsageError as exc:  # the channel was closed under the call
            raise Unavailable(f"grpc: {exc}") from exc

    async def close(self) -> None:
        """Close the channel (the shim keeps running)."""
        self._finish("closed")
        self._watcher.cancel()
        await self._channel.close()

    async def wait_closed(self) -> str:
        """Return (with the reason) once the connection is gone, e.g. because the shim died."""
        await self._closed.wait()
        return self._close_reason

    def _finish(self, reason: str) -> None:
        if not self._closed.is_set():
            self._close_reason = reason
            self._closed.set()

    async def _watch(self) -> None:
        ready = grpc.ChannelConnectivity.READY
        try:
            while not self._closed.is_set():
                state = self._channel.get_state(try_to_connect=False)
                if state is grpc.ChannelConnectivity.SHUTDOWN:
                    break
                if state is not ready:
                    if not await socket_accepts(self._path):
                        self._finish(f"closed: shim socket {self._path} refuses connections")
                        return
                    state = self._channel.get_state(try_to_connect=True)
                await self._channel.wait_for_state_change(state)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a closed channel may fail the wait instead of reporting SHUTDOWN
            log.debug("grpc shim watch of %s ended: %s", self._path, exc)
        self._finish("closed")
