"""A Kubernetes streaming client (SPDY/3.1 and websocket) for tests: what kubectl and crictl do with a URL.

Give it the URL a CRI Exec, Attach or PortForward call returned::

    code, out, err = await exec_via_url(url, b"hello", protocol="spdy")
    echoed = await port_forward_via_url(url, 8080, b"ping", protocol="websocket")

Over SPDY it behaves like client-go's remotecommand executor: it negotiates with
``X-Stream-Protocol-Version``, opens the error, stdin, stdout, stderr (and, with a tty, resize)
streams one at a time, each waiting for the server's SYN_REPLY, sends stdin then FIN, and reads
until the server closes. ``flow_control=False`` makes it behave like spdystream (the library
kubectl and crictl use): no SETTINGS, no WINDOW_UPDATE, windows ignored; the default is a
compliant SPDY/3.1 peer. Over websockets it speaks ``channel.k8s.io`` (v5 by default, with the
stdin close signal). It reuses the server package's sans-I/O codecs; independent referees are
in ``tests/unit/cri/streaming/test_referees.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from pycontainerd.aio import spawn
from pycontainerd.cri.streaming import status
from pycontainerd.cri.streaming.api import TerminalSize
from pycontainerd.cri.streaming.http1 import Head, format_head, parse_head
from pycontainerd.cri.streaming.spdy_conn import SpdyConnection, SpdyStream
from pycontainerd.cri.streaming.spdy_session import SpdySession
from pycontainerd.cri.streaming.ws_conn import STREAM_CLOSE, WebSocketConnection
from pycontainerd.cri.streaming.ws_frames import Opcode, accept_token, new_key

SPDY_COMMAND_PROTOCOLS = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]
"""What client-go offers over SPDY (it leaves v5 to websockets)."""

WEBSOCKET_COMMAND_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
CHUNK = 32 * 1024
TIMEOUT = 60.0


class UpgradeFailed(Exception):
    """The server answered the upgrade request with something other than 101."""

    def __init__(self, status_code: int, head: Head, body: bytes) -> None:
        super().__init__(f"upgrade refused: {status_code} {body.decode(errors='replace').strip()}")
        self.status = status_code
        self.head = head
        self.body = body


class RemoteCommandError(Exception):
    """The session ended with a failure that is not an exit code (the error stream's text)."""


class PortForwardError(Exception):
    """The server reported an error on the port's error stream."""


class ExecResult(NamedTuple):
    """What ``kubectl exec`` shows: the exit code and the two output streams."""

    exit_code: int
    stdout: bytes
    stderr: bytes


@dataclass
class SessionOutput:
    """Everything a remote command session produced, undecoded."""

    protocol: str
    stdout: bytes
    stderr: bytes
    error: bytes


async def http_request(url: str, headers: list[tuple[str, str]], *, method: str = "GET") -> tuple[Head, bytes]:
    """Send one request and return the response head and body (for the error paths)."""
    reader, writer, head = await _request(url, headers, method)
    try:
        body = await _body(reader, head)
    finally:
        writer.close()
    return head, body


async def connect_spdy(
    url: str, protocols: list[str], *, flow_control: bool = True, method: str = "POST"
) -> tuple[SpdyConnection, str, asyncio.Task[None]]:
    """Upgrade to SPDY/3.1; returns the connection, the negotiated protocol and its read-loop task."""
    headers = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]
    headers += [("X-Stream-Protocol-Version", p) for p in protocols]
    reader, writer, head = await _request(url, headers, method)
    if head.status != 101:
        body = await _body(reader, head)
        writer.close()
        raise UpgradeFailed(head.status, head, body)
    session = SpdySession(client=True, enforce_peer_windows=flow_control, announce=flow_control)
    conn = SpdyConnection(reader, writer, session)
    task = spawn(conn.run(), name="spdy-client-read")
    return conn, head.get("X-Stream-Protocol-Version") or "", task


async def connect_websocket(url: str, protocols: list[str]) -> tuple[WebSocketConnection, str]:
    """Perform the RFC 6455 handshake; returns the connection and the chosen subprotocol."""
    key = new_key()
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key)]
    headers.append(("Sec-WebSocket-Version", "13"))
    if protocols:
        headers.append(("Sec-WebSocket-Protocol", ", ".join(protocols)))
    reader, writer, head = await _request(url, headers, "GET")
    if head.status != 101:
        body = await _body(reader, head)
        writer.close()
        raise UpgradeFailed(head.status, head, body)
    if head.get("Sec-WebSocket-Accept") != accept_token(key):
        writer.close()
        raise ConnectionError("bad Sec-WebSocket-Accept")
    return WebSocketConnection(reader, writer, client=True), head.get("Sec-WebSocket-Protocol") or ""


async def remote_command(
    url: str,
    *,
    stdin: bytes | None = None,
    stdout: bool = True,
    stderr: bool = True,
    tty: bool = False,
    protocol: str = "spdy",
    subprotocols: list[str] | None = None,
    resize: list[TerminalSize] | tuple[TerminalSize, ...] = (),
    flow_control: bool = True,
) -> SessionOutput:
    """Run an exec or attach session against ``url`` and collect everything it produced."""
    async with asyncio.timeout(TIMEOUT):
        if protocol == "spdy":
            offered = subprotocols or SPDY_COMMAND_PROTOCOLS
            return await _spdy_command(url, offered, stdin, stdout, stderr and not tty, tty, resize, flow_control)
        if protocol == "websocket":
            return await _ws_command(url, subprotocols or WEBSOCKET_COMMAND_PROTOCOLS, stdin, tty, resize)
        raise ValueError(f"unknown protocol {protocol!r}")


async def exec_via_url(
    url: str, stdin: bytes | None = None, tty: bool = False, protocol: str = "spdy", **options: object
) -> ExecResult:
    """Run a session like ``kubectl exec`` and return (exit code, stdout, stderr).

    Raises:
        RemoteCommandError: The session failed without an exit code (e.g. no such container).
    """
    out = await remote_command(url, stdin=stdin, tty=tty, protocol=protocol, **options)  # type: ignore[arg-type]
    code = exit_code(out)
    return ExecResult(code, out.stdout, out.stderr)


attach_via_url = exec_via_url
"""Attach sessions use the same protocol as exec."""


def exit_code(out: SessionOutput) -> int:
    """The exit code a session reported; raises :class:`RemoteCommandError` for other failures."""
    if out.protocol.startswith(("v4.", "v5.")):
        code = status.parse_exit_code(out.error)
        if code is None:
            raise RemoteCommandError(json.loads(out.error).get("message", ""))
        return code
    if out.error:
        raise RemoteCommandError(out.error.decode())
    return 0


async def port_forward_via_url(
    url: str, port: int, payload: bytes, *, protocol: str = "spdy", flow_control: bool = True, expect: int | None = None
) -> bytes:
    """Send ``payload`` to ``port`` through the forward and return what came back.

    SPDY half-closes after the payload and reads until the server closes. Websocket channels
    cannot half-close, so it reads until ``expect`` bytes (default: as many as sent) arrived.

    Raises:
        PortForwardError: The server wrote to the port's error stream.
    """
    async with asyncio.timeout(TIMEOUT):
        if protocol == "spdy":
            return await _spdy_forward(url, port, payload, flow_control)
        if protocol == "websocket":
            return await _ws_forward(url, port, payload, len(payload) if expect is None else expect)
        raise ValueError(f"unknown protocol {protocol!r}")


# -- SPDY ---------------------------------------------------------------------------------


async def _spdy_command(
    url: str,
    offered: list[str],
    stdin: bytes | None,
    stdout: bool,
    stderr: bool,
    tty: bool,
    resize: list[TerminalSize] | tuple[TerminalSize, ...],
    flow_control: bool,
) -> SessionOutput:
    conn, protocol, loop = await connect_spdy(url, offered, flow_control=flow_control)
    try:
        error = await conn.open_stream({"streamtype": "error"})
        await error.close()
        streams: dict[str, SpdyStream] = {}
        wanted = [("stdin", stdin is not None), ("stdout", stdout), ("stderr", stderr)]
        wanted.append(("resize", tty and protocol in ("v3.channel.k8s.io", "v4.channel.k8s.io", "v5.channel.k8s.io")))
        for kind, on in wanted:
            if on:
                streams[kind] = await conn.open_stream({"streamtype": kind})
        out: dict[str, bytes] = {}

        async def collect(kind: str, stream: SpdyStream) -> None:
            out[kind] = await stream.read_all(limit=64 << 20)

        async with asyncio.TaskGroup() as group:
            for kind in ("stdout", "stderr"):
                if kind in streams:
                    group.create_task(collect(kind, streams[kind]))
            group.create_task(collect("error", error))
            if "resize" in streams:
                for size in resize:
                    await streams["resize"].write(
                        json.dumps({"Width": size.width, "Height": size.height}).encode() + b"\n"
                    )
            if stdin is not None:
                await _write_all(streams["stdin"], stdin)
                await streams["stdin"].close()
        return SessionOutput(protocol, out.get("stdout", b""), out.get("stderr", b""), out.get("error", b""))
    finally:
        await _close_spdy(conn, loop)


async def _spdy_forward(url: str, port: int, payload: bytes, flow_control: bool) -> bytes:
    conn, _protocol, loop = await connect_spdy(url, ["portforward.k8s.io"], flow_control=flow_control)
    try:
        headers = {"port": str(port), "requestid": "0"}
        error = await conn.open_stream({"streamtype": "error", **headers})
        await error.close()
        data = await conn.open_stream({"streamtype": "data", **headers})

        async def send() -> None:
            await _write_all(data, payload)
            await data.close()

        async with asyncio.TaskGroup() as group:
            group.create_task(send())
            received = group.create_task(data.read_all(limit=64 << 20))
            problem = group.create_task(error.read_all())
        if problem.result():
            raise PortForwardError(problem.result().decode())
        return received.result()
    finally:
        await _close_spdy(conn, loop)


async def _write_all(stream: SpdyStream, payload: bytes) -> None:
    for start in range(0, len(payload), CHUNK):
        await stream.write(payload[start : start + CHUNK])


async def _close_spdy(conn: SpdyConnection, loop: asyncio.Task[None]) -> None:
    conn.abort()
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop


# -- websockets -----------------------------------------------------------------------------


async def _ws_command(
    url: str, offered: list[str], stdin: bytes | None, tty: bool, resize: list[TerminalSize] | tuple[TerminalSize, ...]
) -> SessionOutput:
    ws, protocol = await connect_websocket(url, offered)
    encoded = "base64" in protocol
    out: dict[int, list[bytes]] = {1: [], 2: [], 3: []}

    async def send(channel: int, data: bytes) -> None:
        if encoded:
            await ws.send(Opcode.TEXT, bytes([0x30 + channel]) + base64.b64encode(data))
        else:
            await ws.send(Opcode.BINARY, bytes([channel]) + data)

    async def receive() -> None:
        while (message := await ws.receive()) is not None:
            if not message.payload:
                continue
            channel, data = message.payload[0], message.payload[1:]
            if encoded:
                channel, data = channel - 0x30, base64.b64decode(data)
            out.setdefault(channel, []).append(data)

    reading = spawn(receive(), name="ws-client-read")
    try:
        for size in resize if tty else ():
            await send(4, json.dumps({"Width": size.width, "Height": size.height}).encode())
        if stdin is not None:
            for start in range(0, len(stdin), CHUNK):
                await send(0, stdin[start : start + CHUNK])
            if protocol == "v5.channel.k8s.io":
                await ws.send(Opcode.BINARY, bytes([STREAM_CLOSE, 0]))
        await reading
    finally:
        reading.cancel()
        ws.abort()
    return SessionOutput(protocol, b"".join(out[1]), b"".join(out[2]), b"".join(out[3]))


async def _ws_forward(url: str, port: int, payload: bytes, expect: int) -> bytes:
    ws, _protocol = await connect_websocket(url, ["v4.channel.k8s.io"])
    prefix = port.to_bytes(2, "little")
    seen: dict[int, bytes] = {}
    data: list[bytes] = []
    errors: list[bytes] = []
    got = 0
    data_channel: int | None = None
    try:
        while (message := await ws.receive()) is not None:
            channel, body = message.payload[0], message.payload[1:]
            if channel not in seen:
                seen[channel] = body  # the first message of every channel is its port
                if body == prefix and channel % 2 == 0 and data_channel is None:
                    data_channel = channel
                    for start in range(0, len(payload), CHUNK):
                        await ws.send(Opcode.BINARY, bytes([channel]) + payload[start : start + CHUNK])
                    if expect == 0:
                        break
                continue
            if channel == data_channel:
                data.append(body)
                got += len(body)
                if got >= expect:
                    break
            elif data_channel is not None and channel == data_channel + 1:
                errors.append(body)
                break
        with contextlib.suppress(ConnectionError):
            await ws.send(Opcode.CLOSE, b"\x03\xe8")
    finally:
        ws.abort()
    if data_channel is None:
        raise PortForwardError(f"the server offered no channel for port {port}")
    if errors:
        raise PortForwardError(b"".join(errors).decode())
    return b"".join(data)


# -- HTTP -----------------------------------------------------------------------------------


async def _request(
    url: str, headers: list[tuple[str, str]], method: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Head]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        format_head(f"{method} {target} HTTP/1.1", [("Host", parts.netloc), *headers, ("Content-Length", "0")])
    )
    head = parse_head(await reader.readuntil(b"\r\n\r\n"), response=True)
    return reader, writer, head


async def _body(reader: asyncio.StreamReader, head: Head) -> bytes:
    length = head.get("Content-Length")
    if length is not None:
        return await reader.readexactly(int(length))
    return await reader.read()
