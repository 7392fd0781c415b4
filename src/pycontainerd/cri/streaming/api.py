"""What the streaming server and the CRI service agree on: requests, byte streams, the Runtime.

The CRI service registers a request (:class:`ExecRequest`, :class:`AttachRequest`,
:class:`PortForwardRequest`) and hands the returned URL to kubelet. When the client connects
and the protocol is negotiated, the server calls the matching :class:`Runtime` method with
:class:`Streams` (exec, attach) or a :class:`DuplexStream` (port forward). The runtime sees only
these small interfaces, never SPDY or websocket frames.

Conventions shared by every stream handed to a runtime:

- ``read(n)`` returns at most ``n`` bytes, waits while nothing is buffered, and returns ``b""``
  once the client has closed its side (SPDY FIN, websocket v5 close signal, or the connection
  went away). It never raises for a closed stream.
- ``write(data)`` waits for room (flow control, socket buffers) and raises ``ConnectionError``
  once the client can no longer receive.
- ``close()`` ends the runtime's side: the client reads end-of-stream. It is idempotent, and the
  server closes every stream itself when the runtime call returns.
- If the client goes away or the server stops, the runtime call is cancelled: a runtime must
  treat ``asyncio.CancelledError`` as "kill and clean up".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@dataclass(frozen=True, slots=True)
class ExecRequest:
    """A command to run in a container (CRI ``ExecRequest``).

    Attributes:
        container_id: The container to run the command in.
        cmd: The command and its arguments.
        tty: Whether the command gets a terminal; stderr is then merged into stdout.
        stdin: Whether the client streams stdin.
        stdout: Whether the client wants stdout.
        stderr: Whether the client wants stderr (must be false with ``tty``).
    """

    container_id: str
    cmd: list[str]
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True

    @classmethod
    def from_message(cls, message: Any) -> ExecRequest:
        """Copy the fields of a CRI ``ExecRequest`` message (or anything with the same attributes)."""
        return cls(
            container_id=message.container_id,
            cmd=list(message.cmd),
            tty=bool(message.tty),
            stdin=bool(message.stdin),
            stdout=bool(message.stdout),
            stderr=bool(message.stderr),
        )


@dataclass(frozen=True, slots=True)
class AttachRequest:
    """A request to attach to a container's main process (CRI ``AttachRequest``).

    Attributes:
        container_id: The container to attach to.
        tty: Whether the container runs with a terminal.
        stdin: Whether the client streams stdin.
        stdout: Whether the client wants stdout.
        stderr: Whether the client wants stderr (must be false with ``tty``).
    """

    container_id: str
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True

    @classmethod
    def from_message(cls, message: Any) -> AttachRequest:
        """Copy the fields of a CRI ``AttachRequest`` message (or anything with the same attributes)."""
        return cls(
            container_id=message.container_id,
            tty=bool(message.tty),
            stdin=bool(message.stdin),
            stdout=bool(message.stdout),
            stderr=bool(message.stderr),
        )


@dataclass(frozen=True, slots=True)
class PortForwardRequest:
    """A request to forward ports of a pod (CRI ``PortForwardRequest``).

    Attributes:
        pod_sandbox_id: The pod whose network namespace the ports live in.
        ports: The ports a websocket client gets channels for. SPDY clients name the port of
            each stream in its headers instead, as with kubelet.
    """

    pod_sandbox_id: str
    ports: list[int] = field(default_factory=list)

    @classmethod
    def from_message(cls, message: Any) -> PortForwardRequest:
        """Copy the fields of a CRI ``PortForwardRequest`` message (or anything with the same attributes)."""
        return cls(pod_sandbox_id=message.pod_sandbox_id, ports=[int(p) for p in message.port])


StreamingRequest = ExecRequest | AttachRequest | PortForwardRequest


@dataclass(frozen=True, slots=True)
class TerminalSize:
    """A terminal resize event sent by the client (``{"Width": .., "Height": ..}`` on the wire)."""

    width: int
    height: int


class ByteReader(Protocol):
    """Bytes from the client: ``read`` returns ``b""`` at end of stream."""

    async def read(self, n: int = 65536) -> bytes:
        """Return at most ``n`` bytes, waiting for at least one; ``b""`` once the client closed."""
        ...


class ByteWriter(Protocol):
    """Bytes to the client."""

    async def write(self, data: bytes) -> None:
        """Send ``data``, waiting for room; raises ``ConnectionError`` when the client is gone."""
        ...

    async def close(self) -> None:
        """End the stream: the client reads end-of-stream. Idempotent."""
        ...


class DuplexStream(ByteReader, ByteWriter, Protocol):
    """Both directions of one forwarded connection (port forward's data stream)."""


@dataclass(slots=True)
class Streams:
    """The client's side of an exec or attach session, as the runtime sees it.

    Attributes:
        stdin: The client's stdin, or None when the request had no stdin.
        stdout: Where the process's stdout goes, or None.
        stderr: Where the process's stderr goes, or None (always None with ``tty``: a
            terminal merges stderr into stdout, so the runtime must attach one).
        tty: Whether the runtime must give the process a terminal.
        resize: Terminal size changes in the order the client sent them. The iterator ends when
            the client closes its resize stream or the session ends. SPDY clients send sizes
            only with a tty and from v3 on; websocket clients may send them on channel 4 at any
            time (kubelet passes them on regardless of ``tty``, and so does this server).
    """

    stdin: ByteReader | None
    stdout: ByteWriter | None
    stderr: ByteWriter | None
    tty: bool
    resize: AsyncIterator[TerminalSize]


class Runtime(Protocol):
    """What the streaming server needs from the container runtime (kubelet's ``streaming.Runtime``)."""

    async def exec(self, container_id: str, cmd: list[str], streams: Streams) -> int:
        """Run ``cmd`` in the container, copying stdio through ``streams``; return its exit code.

        Raises:
            Exception: Any error (a missing container, a failed start) is reported to the client as
                a Failure status carrying ``str(error)``.
        """
        ...

    async def attach(self, container_id: str, streams: Streams) -> None:
        """Connect ``streams`` to the container's main process until the client or the process is done.

        Raises:
            Exception: Reported to the client as a Failure status carrying ``str(error)``.
        """
        ...

    async def port_forward(self, pod_sandbox_id: str, port: int, stream: DuplexStream) -> None:
        """Copy bytes both ways between ``stream`` and ``port`` in the pod until both directions ended.

        Raises:
            Exception: Written to the client's error stream for that port.
        """
        ...
