"""Exec and attach sessions over SPDY and websockets (kubelet's ``streaming/remotecommand``).

A session is: obtain the client's streams, run the runtime call with them, report the outcome
on the error stream, close. What differs between transports is how streams are obtained:

- SPDY: the client opens one stream per role, named by the ``streamtype`` header (``error``,
  ``stdin``, ``stdout``, ``stderr``, ``resize``). The server replies to each as it arrives and
  waits (``stream_creation_timeout``) until it has as many as the request implies: the error
  stream, one per requested stdio stream, and a resize stream for a tty from v3 on. Only then
  does the command start, so that no output is lost.
- Websocket: channels are implied; the server sends an empty message on the lowest writable
  channel (stdout, else stderr, else error) to tell the client it is ready.

Versions: v1 to v3 report failures as plain text and success as nothing; v4 and v5 write a JSON
``metav1.Status`` (:mod:`.status`). v5 differs from v4 only on websockets (the stdin close
signal). v1 closes the server's side of stdin straight away, as kubelet 1.0 did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycontainerd.aio import spawn
from pycontainerd.cri.streaming import status as st
from pycontainerd.cri.streaming.api import AttachRequest, ByteWriter, ExecRequest, Runtime, Streams
from pycontainerd.cri.streaming.pipe import ResizeQueue
from pycontainerd.cri.streaming.spdy_frames import RstStatus
from pycontainerd.cri.streaming.ws_conn import ChannelMux, WebSocketConnection

if TYPE_CHECKING:
    from pycontainerd.cri.streaming.spdy_conn import SpdyConnection, SpdyStream

log = logging.getLogger(__name__)

V1, V2, V3, V4, V5 = (
    "channel.k8s.io",
    "v2.channel.k8s.io",
    "v3.channel.k8s.io",
    "v4.channel.k8s.io",
    "v5.channel.k8s.io",
)
SPDY_PROTOCOLS = [V5, V4, V3, V2, V1]
"""Remote command protocols over SPDY, in kubelet's order."""

BASE64_V1, BASE64_V4 = "base64.channel.k8s.io", "v4.base64.channel.k8s.io"
WEBSOCKET_PROTOCOLS = ["", V1, BASE64_V1, V4, BASE64_V4, V5]
"""Websocket subprotocols (``""``: the client named none)."""

_JSON_STATUS = {V4, V5, BASE64_V4}
_RESIZE_FROM = {V3, V4, V5}
STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
_SPDY_ROLES = ("error", "stdin", "stdout", "stderr", "resize")

Session = Callable[[Streams], Coroutine[Any, Any, st.Status]]
"""Runs the runtime call for one session and returns the status to report."""


@dataclass(frozen=True, slots=True)
class CommandOptions:
    """The streams a session has, from the registered request."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def of(cls, request: ExecRequest | AttachRequest) -> CommandOptions:
        """The options of an exec or attach request."""
        return cls(request.stdin, request.stdout, request.stderr and not request.tty, request.tty)


def exec_session(runtime: Runtime, request: ExecRequest) -> Session:
    """A session running ``request``'s command through ``runtime.exec``."""

    async def run(streams: Streams) -> st.Status:
        try:
            code = await runtime.exec(request.container_id, list(request.cmd), streams)
        except Exception as exc:
            log.info("exec in container %s failed: %s", request.container_id, exc)
            return st.internal_error(f"error executing command in container: {exc}")
        return st.success() if code == 0 else st.non_zero_exit(list(request.cmd), code)

    return run


def attach_session(runtime: Runtime, request: AttachRequest) -> Session:
    """A session attached to ``request``'s container through ``runtime.attach``."""

    async def run(streams: Streams) -> st.Status:
        try:
            await runtime.attach(request.container_id, streams)
        except Exception as exc:
            log.info("attach to container %s failed: %s", request.container_id, exc)
            return st.internal_error(f"error attaching to container: {exc}")
        return st.success()

    return run


async def serve_spdy(
    conn: SpdyConnection, protocol: str, options: CommandOptions, session: Session, *, creation_timeout: float
) -> None:
    """Run one session on an upgraded SPDY connection (its read loop must be running)."""
    streams = await _collect_spdy_streams(conn, protocol, options, creation_timeout)
    if streams is None:
        return
    refuser = spawn(_refuse_streams(conn), name="spdy-refuse-late-streams")
    resize = ResizeQueue()
    pump = spawn(resize.pump(streams["resize"]), name="spdy-resize") if "resize" in streams else None
    if pump is None:
        resize.close()
    try:
        stdin = streams.get("stdin")
        if protocol == V1 and stdin is not None:
            await stdin.close()
        handed = Streams(
            stdin=stdin,
            stdout=streams.get("stdout"),
            stderr=None if options.tty else streams.get("stderr"),
            tty=options.tty,
            resize=resize,
        )
        outcome = await _run_until_closed(session, handed, conn.closed)
        await _close_writers(handed)
        error = streams.get("error")
        if outcome is not None and error is not None:
            payload = outcome.to_json() if protocol in _JSON_STATUS else outcome.to_text()
            with contextlib.suppress(ConnectionError):
                if payload:
                    await error.write(payload)
                await error.close()
    finally:
        refuser.cancel()
        if pump is not None:
            pump.cancel()


async def serve_websocket(ws: WebSocketConnection, protocol: str, options: CommandOptions, session: Session) -> None:
    """Run one session on an upgraded websocket connection."""
    readable = {RESIZE} | ({STDIN} if options.stdin else set())
    mux = ChannelMux(
        ws, channels=5, readable=readable, base64=protocol in (BASE64_V1, BASE64_V4), stream_close=protocol == V5
    )
    reader = spawn(mux.run(), name="ws-remotecommand")
    resize = ResizeQueue()
    pump = spawn(resize.pump(mux.reader(RESIZE)), name="ws-resize")
    try:
        ready = STDOUT if options.stdout else STDERR if options.stderr else ERROR
        await mux.send(ready, b"")
        handed = Streams(
            stdin=mux.reader(STDIN) if options.stdin else None,
            stdout=mux.writer(STDOUT) if options.stdout else None,
            stderr=mux.writer(STDERR) if options.stderr and not options.tty else None,
            tty=options.tty,
            resize=resize,
        )
        outcome = await _run_until_closed(session, handed, ws.closed)
        if outcome is not None:
            payload = outcome.to_json() if protocol in _JSON_STATUS else outcome.to_text()
            if payload:
                await mux.send(ERROR, payload)
    except ConnectionError as exc:
        log.debug("websocket session ended early: %s", exc)
    finally:
        pump.cancel()
        await ws.close()
        reader.cancel()


async def _collect_spdy_streams(
    conn: SpdyConnection, protocol: str, options: CommandOptions, creation_timeout: float
) -> dict[str, SpdyStream] | None:
    expected = 1 + options.stdin + options.stdout + options.stderr + (options.tty and protocol in _RESIZE_FROM)
    streams: dict[str, SpdyStream] = {}
    received = 0
    try:
        async with asyncio.timeout(creation_timeout):
            while received < expected:
                stream = await conn.accept()
                if stream is None:
                    return None
                kind = stream.header("streamType")
                conn.reply(stream)
                if kind not in ("stdin", "resize"):
                    stream.discard_input()
                if kind in _SPDY_ROLES and (kind != "resize" or protocol in _RESIZE_FROM):
                    streams[kind] = stream
                    received += 1
                else:
                    log.debug("ignoring SPDY stream of unexpected type %r", kind)
    except TimeoutError:
        log.info("timed out waiting for the client to create streams (%d of %d)", received, expected)
        return None
    return streams


async def _refuse_streams(conn: SpdyConnection) -> None:
    # The session's streams are all there; anything later is refused, not left unanswered.
    while (stream := await conn.accept()) is not None:
        stream.reset(RstStatus.REFUSED_STREAM)


async def _run_until_closed(session: Session, streams: Streams, closed: asyncio.Event) -> st.Status | None:
    """Run ``session``; cancel it and return None if the connection ends first."""
    task = spawn(session(streams), name="remotecommand-session")
    gone = spawn(closed.wait(), name="remotecommand-watch")
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        log.info("client went away; cancelling the session")
        return None
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _close_writers(streams: Streams) -> None:
    writers: list[ByteWriter | None] = [streams.stdout, streams.stderr]
    for writer in writers:
        if writer is not None:
            with contextlib.suppress(ConnectionError):
                await writer.close()
