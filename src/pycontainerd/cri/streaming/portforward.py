"""Port forwarding over SPDY and websockets (kubelet's ``streaming/portforward``).

SPDY (``portforward.k8s.io``): one connection carries any number of forwarded TCP connections.
For each, the client opens two streams with the same ``port`` and ``requestID`` headers:
``streamType: error`` and ``streamType: data``. Once both arrived, the runtime copies between the
data stream and the pod's port; a failure is written to the error stream as kubelet's JSON
``{"closeConnection": .., "message": ..}``. A pair that is still incomplete after
``stream_creation_timeout`` gets a timeout message on its error stream. Streams without a valid
port or type are reset. Old clients send no ``requestID``; their streams are paired by id, as
kubelet does (error stream ``n``, data stream ``n + 2``).

Websocket (``v4.channel.k8s.io``, ``v4.base64.channel.k8s.io`` or none): the ports come from the
registered request; port ``i`` gets data channel ``2i`` and error channel ``2i + 1``, and the
server first sends each channel the port as two little-endian bytes. The session ends when every
forward finished or the client closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pycontainerd.aio import spawn
from pycontainerd.cri.streaming import status as st
from pycontainerd.cri.streaming.spdy_frames import RstStatus
from pycontainerd.cri.streaming.ws_conn import ChannelMux, WebSocketConnection

if TYPE_CHECKING:
    from pycontainerd.cri.streaming.api import DuplexStream, Runtime
    from pycontainerd.cri.streaming.spdy_conn import SpdyConnection, SpdyStream

log = logging.getLogger(__name__)

SPDY_PROTOCOLS = ["portforward.k8s.io"]
WEBSOCKET_PROTOCOLS = ["", "v4.channel.k8s.io", "v4.base64.channel.k8s.io"]


@dataclass(slots=True)
class _Pair:
    request_id: str
    data: SpdyStream | None = None
    error: SpdyStream | None = None
    complete: asyncio.Event = field(default_factory=asyncio.Event)


def _invalid(stream: SpdyStream) -> str | None:
    port = stream.header("port")
    if not port:
        return '"port" header is required'
    if not port.isdigit() or int(port) > 0xFFFF:
        return f"unable to parse {port!r} as a port"
    if int(port) < 1:
        return f"port {port!r} must be > 0"
    kind = stream.header("streamType")
    if not kind:
        return '"streamType" header is required'
    if kind not in ("data", "error"):
        return f"invalid stream type {kind!r}"
    return None


def _request_id(stream: SpdyStream) -> str:
    request_id = stream.header("requestID")
    if request_id:
        return request_id
    return str(stream.id if stream.header("streamType") == "error" else stream.id - 2)


async def serve_spdy(conn: SpdyConnection, runtime: Runtime, pod_sandbox_id: str, *, creation_timeout: float) -> None:
    """Forward every stream pair the client opens until the connection ends."""
    pairs: dict[str, _Pair] = {}
    tasks: set[asyncio.Task[None]] = set()

    def track(task: asyncio.Task[None]) -> None:
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        while (stream := await conn.accept()) is not None:
            if (problem := _invalid(stream)) is not None:
                log.info("rejecting port-forward stream %d: %s", stream.id, problem)
                stream.reset(RstStatus.CANCEL)
                continue
            conn.reply(stream)
            request_id = _request_id(stream)
            pair = pairs.get(request_id)
            if pair is None:
                pair = pairs[request_id] = _Pair(request_id)
                track(spawn(_expire(pairs, pair, creation_timeout), name="portforward-pair-timeout"))
            kind = stream.header("streamType")
            if kind == "error":
                stream.discard_input()
            if (pair.error if kind == "error" else pair.data) is not None:
                await _report(
                    pair.error, f"error processing stream for request {request_id}: {kind} stream already assigned"
                )
                stream.reset(RstStatus.CANCEL)
                continue
            if kind == "error":
                pair.error = stream
            else:
                pair.data = stream
            if pair.data is not None and pair.error is not None:
                pair.complete.set()
                track(spawn(_forward(runtime, pod_sandbox_id, pair.data, pair.error), name="portforward"))
    finally:
        for task in list(tasks):
            task.cancel()
        for task in list(tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _expire(pairs: dict[str, _Pair], pair: _Pair, creation_timeout: float) -> None:
    try:
        async with asyncio.timeout(creation_timeout):
            await pair.complete.wait()
    except TimeoutError:
        log.info("port-forward request %s: timed out waiting for streams", pair.request_id)
        await _report(pair.error, f"request {pair.request_id}: timed out waiting for streams")
        for stream in (pair.data, pair.error):
            if stream is not None:
                stream.reset(RstStatus.CANCEL)
    finally:
        pairs.pop(pair.request_id, None)


async def _forward(runtime: Runtime, pod_sandbox_id: str, data: SpdyStream, error: SpdyStream) -> None:
    port = int(data.header("port"))
    try:
        await runtime.port_forward(pod_sandbox_id, port, data)
    except Exception as exc:
        # A peer reset or a broken pipe ends this forward only; anything else asks the client to drop the connection.
        benign = isinstance(exc, OSError) and exc.errno in (errno.EPIPE, errno.ECONNRESET)
        message = f"error forwarding port {port} to pod {pod_sandbox_id}, uid : {exc}"
        log.info("%s", message)
        with contextlib.suppress(ConnectionError):
            await error.write(st.port_forward_error(message, close_connection=not benign))
    finally:
        for stream in (data, error):
            with contextlib.suppress(ConnectionError):
                await stream.close()


async def _report(stream: SpdyStream | None, message: str) -> None:
    if stream is not None:
        with contextlib.suppress(ConnectionError):
            await stream.write(message.encode())


async def serve_websocket(
    ws: WebSocketConnection, protocol: str, runtime: Runtime, pod_sandbox_id: str, ports: list[int]
) -> None:
    """Forward the request's ports over channels until every forward ended or the client left."""
    mux = ChannelMux(ws, channels=2 * len(ports), readable=set(), base64=protocol == "v4.base64.channel.k8s.io")
    duplexes = [mux.duplex(2 * i) for i in range(len(ports))]
    reader = spawn(mux.run(), name="ws-portforward")
    forwards: list[asyncio.Task[None]] = []
    gone = spawn(ws.closed.wait(), name="ws-portforward-watch")
    try:
        for i, port in enumerate(ports):
            prefix = port.to_bytes(2, "little")
            await mux.send(2 * i, prefix)
            await mux.send(2 * i + 1, prefix)
        forwards = [
            spawn(
                _forward_channel(runtime, pod_sandbox_id, port, duplexes[i], mux, 2 * i + 1), name="ws-portforward-port"
            )
            for i, port in enumerate(ports)
        ]
        if forwards:
            # Every forward finishing ends the session; so does the client leaving (then the rest is cancelled).
            everything: asyncio.Future[Any] = asyncio.gather(*forwards, return_exceptions=True)
            await asyncio.wait({gone, everything}, return_when=asyncio.FIRST_COMPLETED)
    except ConnectionError as exc:
        log.debug("websocket port forward ended early: %s", exc)
    finally:
        gone.cancel()
        for task in forwards:
            task.cancel()
        for task in forwards:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await ws.close()
        reader.cancel()


async def _forward_channel(
    runtime: Runtime, pod_sandbox_id: str, port: int, data: DuplexStream, mux: ChannelMux, error: int
) -> None:
    try:
        await runtime.port_forward(pod_sandbox_id, port, data)
    except Exception as exc:
        message = f"error forwarding port {port} to pod {pod_sandbox_id}, uid : {exc}"
        log.info("%s", message)
        with contextlib.suppress(ConnectionError):
            await mux.send(error, message.encode())
