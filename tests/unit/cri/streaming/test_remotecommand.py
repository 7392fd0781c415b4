"""Exec and attach sessions end to end: our client, the server on 127.0.0.1, real local processes."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from pycontainerd.cri.streaming import AttachRequest, ExecRequest, TerminalSize
from tests.support.k8s_stream_client import (
    RemoteCommandError,
    connect_spdy,
    exec_via_url,
    remote_command,
)

from .helpers import CONTAINER, LocalRuntime, run, serving

BOTH = pytest.mark.parametrize("protocol", ["spdy", "websocket"])
ECHO_BOTH = ["sh", "-c", "echo out; echo err >&2"]


@BOTH
def test_stdout_and_stderr_stay_apart(protocol: str) -> None:
    async def scenario() -> None:
        async with serving() as server:
            url = server.get_exec(ExecRequest(CONTAINER, ECHO_BOTH))
            assert await exec_via_url(url, protocol=protocol) == (0, b"out\n", b"err\n")

    run(scenario())


@BOTH
@pytest.mark.parametrize("code", [0, 1, 3, 127])
def test_exit_codes(protocol: str, code: int) -> None:
    async def scenario() -> None:
        async with serving() as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["sh", "-c", f"exit {code}"]))
            assert (await exec_via_url(url, protocol=protocol)).exit_code == code

    run(scenario())


@BOTH
def test_exit_status_is_kubelets_json(protocol: str) -> None:
    async def scenario() -> None:
        async with serving() as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["sh", "-c", "exit 3"]))
            out = await remote_command(url, protocol=protocol)
            assert out.protocol in ("v4.channel.k8s.io", "v5.channel.k8s.io")
            assert json.loads(out.error) == {
                "metadata": {},
                "status": "Failure",
                "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
            }
            url = server.get_exec(ExecRequest(CONTAINER, ["true"]))
            assert (await remote_command(url, protocol=protocol)).error == b'{"metadata":{},"status":"Success"}'

    run(scenario())


@pytest.mark.parametrize(
    ("protocol", "flow_control"),
    [("spdy", True), ("spdy", False), ("websocket", True)],
    ids=["spdy31-peer", "spdystream-like-peer", "websocket"],
)
def test_stdin_to_cat_beyond_the_windows(protocol: str, flow_control: bool) -> None:
    # 300 KiB each way: several 64 KiB windows, so WINDOW_UPDATE (or the lack of it) matters.
    payload = os.urandom(300 * 1024)

    async def scenario() -> None:
        async with serving() as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["cat"], stdin=True))
            result = await exec_via_url(url, payload, protocol=protocol, flow_control=flow_control)
            assert result == (0, payload, b"")

    run(scenario())


@BOTH
def test_tty_merges_stderr_into_stdout(protocol: str) -> None:
    async def scenario() -> None:
        async with serving() as server:
            url = server.get_exec(ExecRequest(CONTAINER, ECHO_BOTH, tty=True, stderr=False))
            code, out, err = await exec_via_url(url, tty=True, protocol=protocol)
            assert (code, err) == (0, b"")
            assert out == b"out\r\nerr\r\n"  # a real terminal: merged, with its CRLF line ends

    run(scenario())


@BOTH
def test_resize_events_reach_the_runtime(protocol: str) -> None:
    sizes = [TerminalSize(80, 24), TerminalSize(132, 43)]
    # Resize and stdin travel on separate streams, so nothing orders them against the command:
    # the command waits until its terminal has the last size (it hangs if that never happens).
    script = 'until [ "$(stty size)" = "43 132" ]; do sleep 0.01; done; echo resized'

    async def scenario() -> None:
        runtime = LocalRuntime()
        async with serving(runtime) as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["sh", "-c", script], tty=True, stderr=False))
            assert await exec_via_url(url, tty=True, protocol=protocol, resize=sizes) == (0, b"resized\r\n", b"")
            assert runtime.resizes == sizes

    run(scenario(), limit=20)


def test_stdin_eof_on_websocket_needs_v5() -> None:
    # v4 has no stdin close signal, so only a command that stops reading by itself ends.
    async def scenario() -> None:
        async with serving() as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["head", "-c", "5"], stdin=True))
            result = await exec_via_url(url, b"12345", protocol="websocket", subprotocols=["v4.channel.k8s.io"])
            assert result == (0, b"12345", b"")

    run(scenario())


@BOTH
def test_attach(protocol: str) -> None:
    async def scenario() -> None:
        async with serving() as server:
            url = server.get_attach(AttachRequest(CONTAINER, stdin=True))
            assert await exec_via_url(url, b"attached\n", protocol=protocol) == (0, b"attached\n", b"")

    run(scenario())


@BOTH
def test_missing_container_is_a_failure_status(protocol: str) -> None:
    async def scenario() -> None:
        async with serving() as server:
            url = server.get_exec(ExecRequest("no-such-container", ["true"]))
            out = await remote_command(url, protocol=protocol)
            status = json.loads(out.error)
            assert (status["status"], status["reason"], status["code"]) == ("Failure", "InternalError", 500)
            assert "no-such-container" in status["message"]
            with pytest.raises(RemoteCommandError, match="error executing command in container"):
                await exec_via_url(server.get_exec(ExecRequest("no-such-container", ["true"])), protocol=protocol)

    run(scenario())


@pytest.mark.parametrize(
    ("subprotocol", "failure", "success"),
    [
        ("v4.channel.k8s.io", b'"NonZeroExitCode"', b'{"metadata":{},"status":"Success"}'),
        ("v3.channel.k8s.io", b"command terminated with non-zero exit code", b""),
        ("v2.channel.k8s.io", b"command terminated with non-zero exit code", b""),
        ("channel.k8s.io", b"command terminated with non-zero exit code", b""),
    ],
)
def test_spdy_protocol_versions(subprotocol: str, failure: bytes, success: bytes) -> None:
    async def scenario() -> None:
        async with serving() as server:
            for cmd, expected in ((["sh", "-c", "echo x; exit 4"], failure), (["echo", "x"], success)):
                url = server.get_exec(ExecRequest(CONTAINER, cmd))
                out = await remote_command(url, protocol="spdy", subprotocols=[subprotocol])
                assert (out.protocol, out.stdout) == (subprotocol, b"x\n")
                assert expected in out.error if expected else out.error == b""

    run(scenario())


@pytest.mark.parametrize(
    "subprotocol",
    ["v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io"],
)
def test_websocket_protocol_versions(subprotocol: str) -> None:
    async def scenario() -> None:
        async with serving() as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["sh", "-c", "echo x; echo y >&2; exit 4"]))
            out = await remote_command(url, protocol="websocket", subprotocols=[subprotocol])
            assert (out.protocol, out.stdout, out.stderr) == (subprotocol, b"x\n", b"y\n")
            assert b"exit code 4" in out.error

    run(scenario())


def test_websocket_ready_message_goes_to_the_lowest_writable_channel() -> None:
    async def scenario() -> None:
        async with serving() as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["sh", "-c", "echo e >&2"], stdout=False))
            out = await remote_command(url, protocol="websocket", stdout=False)
            assert (out.stdout, out.stderr) == (b"", b"e\n")

    run(scenario())


def test_client_leaving_cancels_the_command() -> None:
    async def scenario() -> None:
        runtime = LocalRuntime()
        async with serving(runtime) as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["sleep", "60"]))
            conn, _, loop = await connect_spdy(url, ["v4.channel.k8s.io"])
            for kind in ("error", "stdout", "stderr"):
                await conn.open_stream({"streamtype": kind})
            await runtime.started.wait()
            conn.abort()
            loop.cancel()
            await runtime.cancellation.wait()

    run(scenario(), limit=20)


def test_streams_not_created_in_time_end_the_connection() -> None:
    async def scenario() -> None:
        runtime = LocalRuntime()
        async with serving(runtime, stream_creation_timeout=0.2) as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["true"], stdin=True))
            conn, _, loop = await connect_spdy(url, ["v4.channel.k8s.io"])
            await conn.open_stream({"streamtype": "error"})  # stdin, stdout and stderr never come
            await asyncio.wait_for(conn.closed.wait(), 10)
            assert not runtime.started.is_set()
            loop.cancel()

    run(scenario())


def test_concurrent_sessions() -> None:
    async def one(server: object, i: int, protocol: str) -> None:
        url = server.get_exec(ExecRequest(CONTAINER, ["sh", "-c", f"cat; echo {i} >&2"], stdin=True))  # type: ignore[attr-defined]
        data = os.urandom(100_000)
        assert await exec_via_url(url, data, protocol=protocol) == (0, data, f"{i}\n".encode())

    async def scenario() -> None:
        async with serving() as server:
            await asyncio.gather(*(one(server, i, ("spdy", "websocket")[i % 2]) for i in range(12)))

    run(scenario())
