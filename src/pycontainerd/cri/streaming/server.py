"""The streaming HTTP server: one-time URLs in, upgraded connections out (kubelet's ``streaming.Server``).

Per connection: read one request head; route ``GET``/``POST`` ``/exec/<token>``,
``/attach/<token>`` or ``/portforward/<token>``; consume the token (unknown, used, expired, or
for another endpoint: 404, as kubelet); then upgrade. A websocket request (``Upgrade:
websocket``) is answered with RFC 6455's handshake; anything else must negotiate a protocol with
``X-Stream-Protocol-Version`` (403 when none matches, listing ours in
``X-Accepted-Stream-Protocol-Versions``) and ask for ``Upgrade: SPDY/3.1`` (else 400).
After ``101 Switching Protocols`` the connection belongs to :mod:`.remotecommand` or
:mod:`.portforward` until the session ends.

:meth:`StreamingServer.stop` closes the listener and cancels every connection's task; the
sessions' ``finally`` blocks close their sockets and runtime calls see ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

from pycontainerd.aio import spawn
from pycontainerd.cri.streaming import portforward, remotecommand
from pycontainerd.cri.streaming.api import AttachRequest, ExecRequest, PortForwardRequest, Runtime, StreamingRequest
from pycontainerd.cri.streaming.http1 import (
    MAX_HEAD,
    Head,
    HttpError,
    is_websocket,
    negotiate,
    parse_head,
    switching_protocols,
)
from pycontainerd.cri.streaming.spdy_conn import SpdyConnection
from pycontainerd.cri.streaming.spdy_session import SpdySession
from pycontainerd.cri.streaming.tokens import Clock, RequestCache
from pycontainerd.cri.streaming.ws_conn import WebSocketConnection
from pycontainerd.cri.streaming.ws_frames import accept_token, valid_key
from pycontainerd.errdefs import InvalidArgument

log = logging.getLogger(__name__)

_ENDPOINTS = {"exec": ExecRequest, "attach": AttachRequest, "portforward": PortForwardRequest}


@dataclass(frozen=True, slots=True)
class StreamingConfig:
    """Settings of the streaming server (containerd's ``stream_server_*`` and kubelet's defaults).

    Attributes:
        address: The address to listen on.
        port: The port; 0 picks a free one (see :attr:`StreamingServer.base_url`).
        idle_timeout: Seconds an upgraded connection may carry no frame before it is closed; 0 or
            None disables it (kubelet: 4 hours).
        stream_creation_timeout: Seconds a SPDY client has to open a session's streams (kubelet: 30).
        request_timeout: Seconds a client has to send its request head after connecting.
        token_ttl: Seconds a URL stays valid (kubelet: 60).
        max_in_flight: URLs that may wait for their client at once (kubelet: 1000).
    """

    address: str = "127.0.0.1"
    port: int = 0
    idle_timeout: float | None = 4 * 3600.0
    stream_creation_timeout: float = 30.0
    request_timeout: float = 60.0
    token_ttl: float = 60.0
    max_in_flight: int = 1000


class StreamingServer:
    """The HTTP server behind the CRI's Exec, Attach and PortForward URLs.

    Args:
        runtime: Runs the sessions (see :class:`~.api.Runtime`).
        config: Listening address, timeouts, cache limits.
        clock: Monotonic clock for token expiry (injectable for tests).
        **settings: Fields of :class:`StreamingConfig` overriding ``config``'s, e.g.
            ``StreamingServer(runtime, port=10010, idle_timeout=None)``.
    """

    def __init__(
        self,
        runtime: Runtime,
        config: StreamingConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        **settings: Any,
    ) -> None:
        self.runtime = runtime
        self.config = dataclasses.replace(config or StreamingConfig(), **settings)
        self._cache: RequestCache[StreamingRequest] = RequestCache(
            ttl=self.config.token_ttl, capacity=self.config.max_in_flight, clock=clock
        )
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.base_url = ""
        """``http://host:port`` once started."""

    async def start(self) -> None:
        """Listen (resolving port 0 to the chosen port)."""
        if self._server is not None:
            raise RuntimeError("streaming server already started")
        self._server = await asyncio.start_server(self._serve, self.config.address, self.config.port, limit=MAX_HEAD)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.base_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        log.info("streaming server listening on %s", self.base_url)

    async def stop(self) -> None:
        """Stop listening and end every connection (idempotent)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def __aenter__(self) -> StreamingServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def connections(self) -> int:
        """Connections being served right now."""
        return len(self._connections)

    # -- URLs for the CRI service ------------------------------------------------------------

    def get_exec(self, request: ExecRequest) -> str:
        """Register an exec and return its one-time URL.

        Raises:
            InvalidArgument: No container id, ``tty`` with ``stderr``, or no stream at all.
            ResourceExhausted: Too many URLs are waiting for their client.
        """
        _validate_stdio(request)
        return self._url("exec", request)

    def get_attach(self, request: AttachRequest) -> str:
        """Register an attach and return its one-time URL (same errors as :meth:`get_exec`)."""
        _validate_stdio(request)
        return self._url("attach", request)

    def get_port_forward(self, request: PortForwardRequest) -> str:
        """Register a port forward and return its one-time URL.

        Raises:
            InvalidArgument: No pod sandbox id.
            ResourceExhausted: Too many URLs are waiting for their client.
        """
        if not request.pod_sandbox_id:
            raise InvalidArgument("missing required pod_sandbox_id")
        return self._url("portforward", request)

    def _url(self, endpoint: str, request: StreamingRequest) -> str:
        if not self.base_url:
            raise RuntimeError("streaming server not started")
        return f"{self.base_url}/{endpoint}/{self._cache.insert(request)}"

    # -- connections ---------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.debug("streaming connection ended: %r", exc)
        except HttpError as exc:
            writer.write(exc.response())
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
        except Exception:
            log.exception("streaming connection failed")
        except asyncio.CancelledError:
            # stop() cancels connections; ending normally keeps asyncio's stream callback from
            # logging the cancelled task as an error. Nothing awaits this task's result.
            log.debug("streaming connection cancelled")
        finally:
            self._connections.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(self.config.request_timeout):
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError as exc:
                raise HttpError(431, "request header fields too large") from exc
        head = parse_head(raw)
        endpoint, _, token = head.path.lstrip("/").partition("/")
        if endpoint not in _ENDPOINTS or not token or "/" in token:
            raise HttpError(404, "404 page not found")
        if head.method not in ("GET", "POST"):
            raise HttpError(405, "405: Method Not Allowed")
        request = self._cache.consume(token)
        if request is None or not isinstance(request, _ENDPOINTS[endpoint]):
            raise HttpError(404, "404 page not found")
        if is_websocket(head):
            await self._serve_websocket(reader, writer, head, request)
        else:
            await self._serve_spdy(reader, writer, head, request)

    async def _serve_spdy(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: Head, request: StreamingRequest
    ) -> None:
        supported = (
            portforward.SPDY_PROTOCOLS if isinstance(request, PortForwardRequest) else remotecommand.SPDY_PROTOCOLS
        )
        protocol = _negotiate_spdy(head, supported)
        connection, upgrade = (head.get("Connection") or "").lower(), (head.get("Upgrade") or "").lower()
        if "upgrade" not in connection or "spdy/3.1" not in upgrade:
            raise HttpError(400, f"unable to upgrade: missing upgrade headers in request: {dict(head.headers)!r}")
        writer.write(
            switching_protocols(
                [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), ("X-Stream-Protocol-Version", protocol)]
            )
        )
        conn = SpdyConnection(reader, writer, SpdySession(client=False), idle_timeout=self.config.idle_timeout)
        loop = spawn(conn.run(), name="spdy-read")
        try:
            if isinstance(request, PortForwardRequest):
                await portforward.serve_spdy(
                    conn, self.runtime, request.pod_sandbox_id, creation_timeout=self.config.stream_creation_timeout
                )
            else:
                session = (
                    remotecommand.exec_session(self.runtime, request)
                    if isinstance(request, ExecRequest)
                    else remotecommand.attach_session(self.runtime, request)
                )
                await remotecommand.serve_spdy(
                    conn,
                    protocol,
                    remotecommand.CommandOptions.of(request),
                    session,
                    creation_timeout=self.config.stream_creation_timeout,
                )
            await conn.close()
        finally:
            conn.abort()
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    async def _serve_websocket(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: Head, request: StreamingRequest
    ) -> None:
        if head.method != "GET":
            raise HttpError(405, "websocket: the method must be GET")
        if head.get("Sec-WebSocket-Version") != "13":
            raise HttpError(400, "websocket: unsupported version", (("Sec-WebSocket-Version", "13"),))
        key = head.get("Sec-WebSocket-Key") or ""
        if not valid_key(key):
            raise HttpError(400, "websocket: missing or invalid Sec-WebSocket-Key")
        is_pf = isinstance(request, PortForwardRequest)
        supported = portforward.WEBSOCKET_PROTOCOLS if is_pf else remotecommand.WEBSOCKET_PROTOCOLS
        offered = head.tokens("Sec-WebSocket-Protocol") or [""]
        protocol = negotiate(offered, supported)
        if protocol is None:
            raise HttpError(403, f"requested protocol(s) are not supported: {offered}; supports {supported}")
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept_token(key))]
        if protocol:
            headers.append(("Sec-WebSocket-Protocol", protocol))
        writer.write(switching_protocols(headers))
        ws = WebSocketConnection(reader, writer, client=False, idle_timeout=self.config.idle_timeout)
        try:
            if isinstance(request, PortForwardRequest):
                await portforward.serve_websocket(
                    ws, protocol, self.runtime, request.pod_sandbox_id, list(request.ports)
                )
            else:
                session = (
                    remotecommand.exec_session(self.runtime, request)
                    if isinstance(request, ExecRequest)
                    else remotecommand.attach_session(self.runtime, request)
                )
                await remotecommand.serve_websocket(ws, protocol, remotecommand.CommandOptions.of(request), session)
        finally:
            ws.abort()


def _negotiate_spdy(head: Head, supported: list[str]) -> str:
    offered = head.tokens("X-Stream-Protocol-Version")
    if not offered:
        raise HttpError(400, "unable to upgrade: X-Stream-Protocol-Version is required")
    protocol = negotiate(offered, supported)
    if protocol is None:
        raise HttpError(
            403,
            f"unable to upgrade: unable to negotiate protocol: client supports {offered}, server accepts {supported}",
            tuple(("X-Accepted-Stream-Protocol-Versions", p) for p in supported),
        )
    return protocol


def _validate_stdio(request: ExecRequest | AttachRequest) -> None:
    if not request.container_id:
        raise InvalidArgument("missing required container_id")
    if request.tty and request.stderr:
        raise InvalidArgument("tty and stderr cannot both be true")
    if not (request.stdin or request.stdout or request.stderr):
        raise InvalidArgument("one of stdin, stdout, or stderr must be set")
