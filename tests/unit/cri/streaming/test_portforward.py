"""Port forwarding end to end: our client, the server, a real TCP echo server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from pycontainerd.cri.streaming import PortForwardRequest
from pycontainerd.cri.streaming.spdy_frames import RstStatus
from tests.support.k8s_stream_client import PortForwardError, connect_spdy, port_forward_via_url

from .helpers import POD, echo_server, free_port, run, serving

MIB = os.urandom(1 << 20)


@pytest.mark.parametrize(
    ("protocol", "flow_control"),
    [("spdy", True), ("spdy", False), ("websocket", True)],
    ids=["spdy31-peer", "spdystream-like-peer", "websocket"],
)
def test_echo_one_mebibyte(protocol: str, flow_control: bool) -> None:
    async def scenario() -> None:
        async with serving() as server, echo_server() as port:
            url = server.get_port_forward(PortForwardRequest(POD, [port]))
            assert await port_forward_via_url(url, port, MIB, protocol=protocol, flow_control=flow_control) == MIB

    run(scenario())


def test_spdy_flow_control_is_exercised_both_ways() -> None:
    # A compliant peer: the server must wait for our WINDOW_UPDATEs and send its own.
    async def scenario() -> None:
        async with serving() as server, echo_server() as port:
            url = server.get_port_forward(PortForwardRequest(POD, [port]))
            conn, _, loop = await connect_spdy(url, ["portforward.k8s.io"])
            headers = {"port": str(port), "requestid": "1"}
            await conn.open_stream({"streamtype": "error", **headers})
            data = await conn.open_stream({"streamtype": "data", **headers})

            async def send() -> None:
                for start in range(0, len(MIB), 100_000):
                    await data.write(MIB[start : start + 100_000])
                await data.close()

            sending = asyncio.ensure_future(send())
            assert await data.read_all(limit=2 << 20) == MIB
            await sending
            # Our client resets any stream whose window the server overruns, so the echo arriving
            # whole proves the server honoured our windows; these prove it reopened its own.
            assert conn.session.frames_received["WindowUpdate"] >= len(MIB) // (32 * 1024)
            assert conn.session.frames_received["Settings"] == 1
            conn.abort()
            loop.cancel()

    run(scenario())


def test_several_forwards_share_one_spdy_connection() -> None:
    async def scenario() -> None:
        async with serving() as server, echo_server() as port:
            url = server.get_port_forward(PortForwardRequest(POD, [port]))
            conn, _, loop = await connect_spdy(url, ["portforward.k8s.io"])
            pairs = []
            for request_id in ("a", "b", "c"):
                headers = {"port": str(port), "requestid": request_id}
                error = await conn.open_stream({"streamtype": "error", **headers})
                await error.close()  # as client-go: the client never writes to the error stream
                pairs.append((error, await conn.open_stream({"streamtype": "data", **headers})))

            async def echo(index: int) -> None:
                _, data = pairs[index]
                payload = bytes([index]) * 100_000
                await data.write(payload)
                await data.close()
                assert await data.read_all() == payload

            await asyncio.gather(*(echo(i) for i in range(3)))
            for error, _ in pairs:
                assert await error.read_all() == b""  # the server closed it: no error
            assert conn.open_streams == 0  # finished streams are forgotten on both sides
            conn.abort()
            loop.cancel()

    run(scenario())


@pytest.mark.parametrize("protocol", ["spdy", "websocket"])
def test_refused_port_is_reported_on_the_error_stream(protocol: str) -> None:
    async def scenario() -> None:
        async with serving() as server:
            port = free_port()
            url = server.get_port_forward(PortForwardRequest(POD, [port]))
            with pytest.raises(PortForwardError) as failed:
                await port_forward_via_url(url, port, b"hello", protocol=protocol)
            text = str(failed.value)
            if protocol == "spdy":  # kubelet's portForwardErrResponse, newline-terminated JSON
                doc = json.loads(text)
                assert doc["closeConnection"] is True
                text = doc["message"]
            assert text.startswith(f"error forwarding port {port} to pod {POD}, uid : ")

    run(scenario())


def test_unknown_pod_is_reported() -> None:
    async def scenario() -> None:
        async with serving() as server, echo_server() as port:
            url = server.get_port_forward(PortForwardRequest("no-such-pod", [port]))
            with pytest.raises(PortForwardError, match="no-such-pod"):
                await port_forward_via_url(url, port, b"x")

    run(scenario())


@pytest.mark.parametrize(
    "headers",
    [
        {"streamtype": "data"},
        {"streamtype": "data", "port": "0"},
        {"streamtype": "data", "port": "99999"},
        {"port": "80"},
    ],
)
def test_invalid_streams_are_reset(headers: dict[str, str]) -> None:
    async def scenario() -> None:
        async with serving() as server:
            url = server.get_port_forward(PortForwardRequest(POD))
            conn, _, loop = await connect_spdy(url, ["portforward.k8s.io"])
            with pytest.raises(ConnectionRefusedError, match=f"status {RstStatus.CANCEL}"):
                await conn.open_stream(headers)
            conn.abort()
            loop.cancel()

    run(scenario())


def test_incomplete_pair_times_out_with_a_message() -> None:
    async def scenario() -> None:
        async with serving(stream_creation_timeout=0.2) as server:
            url = server.get_port_forward(PortForwardRequest(POD))
            conn, _, loop = await connect_spdy(url, ["portforward.k8s.io"])
            error = await conn.open_stream({"streamtype": "error", "port": "80", "requestid": "7"})
            assert await error.read_all() == b"request 7: timed out waiting for streams"
            conn.abort()
            loop.cancel()

    run(scenario())


def test_websocket_channels_per_port() -> None:
    async def scenario() -> None:
        async with serving() as server, echo_server() as first, echo_server() as second:
            for port in (first, second):
                url = server.get_port_forward(PortForwardRequest(POD, [first, second]))
                payload = os.urandom(200_000)
                assert await port_forward_via_url(url, port, payload, protocol="websocket") == payload

    run(scenario())
