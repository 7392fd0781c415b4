"""The HTTP side of the server: routing, tokens, upgrade errors, lifecycle, timeouts."""

from __future__ import annotations

import asyncio

import pytest

from pycontainerd.cri.streaming import AttachRequest, ExecRequest, PortForwardRequest, StreamingServer
from pycontainerd.errdefs import InvalidArgument, ResourceExhausted
from tests.support.k8s_stream_client import (
    UpgradeFailed,
    connect_spdy,
    connect_websocket,
    exec_via_url,
    http_request,
)

from .helpers import CONTAINER, POD, LocalRuntime, run, serving

SPDY_HEADERS = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), ("X-Stream-Protocol-Version", "v4.channel.k8s.io")]
WS_HEADERS = [
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_urls_point_at_the_chosen_port() -> None:
    async def scenario() -> None:
        async with serving() as server:
            assert server.base_url.startswith("http://127.0.0.1:") and not server.base_url.endswith(":0")
            url = server.get_exec(ExecRequest(CONTAINER, ["true"]))
            assert url.startswith(f"{server.base_url}/exec/")
            assert server.get_attach(AttachRequest(CONTAINER)).startswith(f"{server.base_url}/attach/")
            assert server.get_port_forward(PortForwardRequest(POD, [80])).startswith(f"{server.base_url}/portforward/")

    run(scenario())


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (ExecRequest("", ["true"]), "container_id"),
        (ExecRequest(CONTAINER, ["sh"], tty=True, stderr=True), "tty and stderr"),
        (ExecRequest(CONTAINER, ["true"], stdout=False, stderr=False), "one of stdin"),
        (AttachRequest(CONTAINER, tty=True, stderr=True), "tty and stderr"),
        (PortForwardRequest(""), "pod_sandbox_id"),
    ],
)
def test_invalid_requests_get_no_url(request_: ExecRequest | AttachRequest | PortForwardRequest, message: str) -> None:
    async def scenario() -> None:
        async with serving() as server:
            register = {
                ExecRequest: server.get_exec,
                AttachRequest: server.get_attach,
                PortForwardRequest: server.get_port_forward,
            }
            with pytest.raises(InvalidArgument, match=message):
                register[type(request_)](request_)  # type: ignore[operator]

    run(scenario())


def test_too_many_waiting_urls() -> None:
    async def scenario() -> None:
        async with serving(max_in_flight=2) as server:
            server.get_exec(ExecRequest(CONTAINER, ["true"]))
            server.get_port_forward(PortForwardRequest(POD))
            with pytest.raises(ResourceExhausted):
                server.get_attach(AttachRequest(CONTAINER))

    run(scenario())


def test_tokens_are_single_use_and_typed() -> None:
    async def scenario() -> None:
        async with serving() as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["true"]))
            assert (await exec_via_url(url)).exit_code == 0
            head, body = await http_request(url, SPDY_HEADERS, method="POST")
            assert (head.status, body) == (404, b"404 page not found\n")
            wrong_endpoint = server.get_exec(ExecRequest(CONTAINER, ["true"])).replace("/exec/", "/attach/")
            head, _ = await http_request(wrong_endpoint, SPDY_HEADERS, method="POST")
            assert head.status == 404

    run(scenario())


def test_expired_token_is_not_found() -> None:
    async def scenario() -> None:
        clock = Clock()
        async with serving(clock=clock, token_ttl=60) as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["true"]))
            clock.now += 60
            with pytest.raises(UpgradeFailed) as failed:
                await exec_via_url(url)
            assert failed.value.status == 404

    run(scenario())


@pytest.mark.parametrize(
    ("path", "method", "status"),
    [("/nothing/here", "GET", 404), ("/exec/", "GET", 404), ("/exec/a/b", "GET", 404), ("/exec/x", "PUT", 405)],
)
def test_routing(path: str, method: str, status: int) -> None:
    async def scenario() -> None:
        async with serving() as server:
            head, _ = await http_request(server.base_url + path, [], method=method)
            assert head.status == status

    run(scenario())


@pytest.mark.parametrize(
    ("headers", "method", "status", "detail"),
    [
        ([("X-Stream-Protocol-Version", "v4.channel.k8s.io")], "POST", 400, b"missing upgrade headers"),
        (SPDY_HEADERS[:2], "POST", 400, b"X-Stream-Protocol-Version is required"),
        ([*SPDY_HEADERS[:2], ("X-Stream-Protocol-Version", "v9.channel.k8s.io")], "POST", 403, b"unable to negotiate"),
        ([*WS_HEADERS[:3], ("Sec-WebSocket-Key", "short")], "GET", 400, b"Sec-WebSocket-Key"),
        ([*WS_HEADERS[:2], ("Sec-WebSocket-Version", "8"), WS_HEADERS[3]], "GET", 400, b"version"),
        (WS_HEADERS, "POST", 405, b"GET"),
        ([*WS_HEADERS, ("Sec-WebSocket-Protocol", "v9.channel.k8s.io")], "GET", 403, b"not supported"),
    ],
)
def test_bad_upgrades(headers: list[tuple[str, str]], method: str, status: int, detail: bytes) -> None:
    async def scenario() -> None:
        async with serving() as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["true"]))
            head, body = await http_request(url, headers, method=method)
            assert head.status == status
            assert detail in body
            assert head.get("Connection") == "close"
            if status == 403 and method == "POST":
                assert "v4.channel.k8s.io" in head.get_all("X-Accepted-Stream-Protocol-Versions")

    run(scenario())


def test_negotiation_follows_the_clients_preference() -> None:
    async def scenario() -> None:
        async with serving() as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["true"]))
            conn, protocol, loop = await connect_spdy(
                url, ["v9.channel.k8s.io", "v3.channel.k8s.io", "v4.channel.k8s.io"]
            )
            assert protocol == "v3.channel.k8s.io"
            conn.abort()
            loop.cancel()
            url = server.get_exec(ExecRequest(CONTAINER, ["true"]))
            ws, protocol = await connect_websocket(url, ["v9.channel.k8s.io", "base64.channel.k8s.io"])
            assert protocol == "base64.channel.k8s.io"
            ws.abort()

    run(scenario())


def test_stop_closes_every_connection() -> None:
    async def scenario() -> None:
        runtime = LocalRuntime()
        server = StreamingServer(runtime)
        await server.start()
        sessions = [
            asyncio.ensure_future(exec_via_url(server.get_exec(ExecRequest(CONTAINER, ["sleep", "60"])), protocol=p))
            for p in ("spdy", "websocket")
        ]
        await runtime.wait_processes(2)
        assert server.connections == 2
        await server.stop()
        assert server.connections == 0
        assert runtime.cancelled == 2
        # The clients see their connections end instead of hanging; with no status on the error
        # stream client-go's rules read that as success, so only completion is checked.
        await asyncio.wait_for(asyncio.gather(*sessions, return_exceptions=True), 10)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", int(server.base_url.rsplit(":", 1)[1]))

    run(scenario(), limit=30)


@pytest.mark.parametrize("protocol", ["spdy", "websocket"])
def test_idle_connections_are_closed(protocol: str) -> None:
    async def scenario() -> None:
        runtime = LocalRuntime()
        async with serving(runtime, idle_timeout=0.3) as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["sleep", "60"]))
            if protocol == "spdy":
                conn, _, loop = await connect_spdy(url, ["v4.channel.k8s.io"])
                for kind in ("error", "stdout", "stderr"):
                    await conn.open_stream({"streamtype": kind})
                await asyncio.wait_for(conn.closed.wait(), 10)
                loop.cancel()
            else:
                ws, _ = await connect_websocket(url, ["v5.channel.k8s.io"])
                while await ws.receive() is not None:  # the "ready" message, then the close
                    pass
            await asyncio.wait_for(runtime.cancellation.wait(), 10)

    run(scenario())
