"""One connection to the daemon: the channel, the namespace and lease headers, error translation.

Every service proxy (:mod:`~pycontainerd.client.containers`, :mod:`~pycontainerd.client.tasks`...)
calls through :meth:`Connection.call`, the one place where a gRPC status becomes an error kind
of :mod:`pycontainerd.errdefs` (``NotFound``, ``AlreadyExists``...), as containerd's
``errgrpc.ToNative`` does on the Go side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self, TypeVar

import grpc

from pycontainerd.namespaces import DEFAULT_NAMESPACE, GRPC_LEASE_HEADER, GRPC_NAMESPACE_HEADER
from pycontainerd.services._status import from_grpc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

MAX_MESSAGE = 16 << 20
"""containerd's message size limit, both ways."""

T = TypeVar("T")


def translate(exc: grpc.aio.AioRpcError) -> Exception:
    """The error kind (``errdefs``) for a failed call; a refused connection reads as such."""
    details = exc.details() or ""
    if exc.code() == grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
        details = f"cannot connect to the daemon: {details}"
    return from_grpc(exc.code(), details)


@dataclass
class Connection:
    """A channel to the daemon's socket acting in one namespace (and, optionally, a lease).

    Attributes:
        address: the unix socket (``/run/pycontainerd/pycontainerd.sock`` or ``unix:...``).
        namespace: sent as ``containerd-namespace`` on every call.
        lease: when set, sent as ``containerd-lease``: what the calls create is held by it.
        timeout: seconds for ordinary calls (``None``: no deadline); waits never time out.
    """

    address: str
    namespace: str = DEFAULT_NAMESPACE
    lease: str = ""
    timeout: float | None = None
    _channel: grpc.aio.Channel | None = field(default=None, repr=False)

    def channel(self) -> grpc.aio.Channel:
        """The channel, opened on first use."""
        if self._channel is None:
            target = self.address if self.address.startswith("unix:") else f"unix:{self.address}"
            self._channel = grpc.aio.insecure_channel(
                target,
                options=[
                    ("grpc.max_receive_message_length", MAX_MESSAGE),
                    ("grpc.max_send_message_length", MAX_MESSAGE),
                ],
            )
        return self._channel

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The namespace (and lease) headers of every call."""
        if self.lease:
            return ((GRPC_NAMESPACE_HEADER, self.namespace), (GRPC_LEASE_HEADER, self.lease))
        return ((GRPC_NAMESPACE_HEADER, self.namespace),)

    async def call(self, method: Callable[..., Awaitable[T]], request: Any, *, wait: bool = False) -> T:
        """``method(request)`` with the headers and deadline; errors as ``errdefs`` kinds.

        ``wait``: no deadline (Wait, long checkpoints)."""
        try:
            return await method(request, metadata=self.metadata, timeout=None if wait else self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from exc

    async def call_stream(self, method: Callable[..., Any], request: Any) -> AsyncIterator[Any]:
        """The replies of a server-streaming call; errors as ``errdefs`` kinds."""
        try:
            async for reply in method(request, metadata=self.metadata):
                yield reply
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from exc

    async def close(self) -> None:
        """Close the channel (a later call opens a new one)."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
