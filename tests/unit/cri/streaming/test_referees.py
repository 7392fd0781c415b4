"""Independent implementations against our server: kubectl (spdystream, gorilla websocket), aiohttp, curl.

Our own client shares the server's codecs, so a bug in, say, the SPDY header dictionary would
cancel out. These peers share nothing with us.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

import aiohttp
import pytest

from pycontainerd.cri.streaming import ExecRequest, PortForwardRequest

from .fake_apiserver import POD_NAME, fake_apiserver
from .helpers import CONTAINER, POD, echo_server, run, serving

KUBECTL = shutil.which("kubectl")
CURL = shutil.which("curl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")


async def _kubectl(
    server_url: str, *args: str, stdin: bytes = b"", websockets: bool = True
) -> tuple[int, bytes, bytes]:
    env = dict(os.environ, KUBECONFIG="/dev/null", KUBECTL_REMOTE_COMMAND_WEBSOCKETS=str(websockets).lower())
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        f"--server={server_url}",
        "--request-timeout=30s",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out, err


@needs_kubectl
@pytest.mark.parametrize("websockets", [False, True], ids=["spdy", "websocket"])
def test_kubectl_exec_output_and_exit_code(websockets: bool) -> None:
    async def scenario() -> None:
        async with serving() as server, fake_apiserver(server) as api:
            cmd = ["sh", "-c", "echo out; echo err >&2; exit 3"]
            code, out, err = await _kubectl(api.url, "exec", POD_NAME, "--", *cmd, websockets=websockets)
            assert api.upgrades == ["websocket" if websockets else "spdy/3.1"]
            assert (code, out) == (3, b"out\n")
            assert err.startswith(b"err\n") and b"command terminated with exit code 3" in err

    run(scenario())


@needs_kubectl
@pytest.mark.parametrize("websockets", [False, True], ids=["spdy", "websocket"])
def test_kubectl_exec_stdin_beyond_flow_control_windows(websockets: bool) -> None:
    # spdystream ignores SPDY flow control: 256 KiB each way must not stall on a 64 KiB window.
    payload = os.urandom(256 * 1024)

    async def scenario() -> None:
        async with serving() as server, fake_apiserver(server) as api:
            code, out, err = await _kubectl(
                api.url, "exec", "-i", POD_NAME, "--", "cat", stdin=payload, websockets=websockets
            )
            assert api.upgrades == ["websocket" if websockets else "spdy/3.1"]
            assert (code, err) == (0, b"")
            assert out == payload

    run(scenario())


@needs_kubectl
def test_kubectl_port_forward_echo() -> None:
    payload = os.urandom(1 << 20)

    async def scenario() -> None:
        async with serving() as server, fake_apiserver(server) as api, echo_server() as port:
            env = dict(os.environ, KUBECONFIG="/dev/null", KUBECTL_PORT_FORWARD_WEBSOCKETS="false")
            assert KUBECTL is not None
            proc = await asyncio.create_subprocess_exec(
                KUBECTL,
                f"--server={api.url}",
                "port-forward",
                POD_NAME,
                f":{port}",
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
            try:
                assert proc.stdout is not None
                line = await proc.stdout.readline()  # "Forwarding from 127.0.0.1:LOCAL -> PORT"
                local = int(line.split(b" -> ")[0].rsplit(b":", 1)[1])
                for _ in range(2):  # two TCP connections over kubectl's one SPDY connection
                    reader, writer = await asyncio.open_connection("127.0.0.1", local)
                    writer.write(payload)
                    writer.write_eof()
                    assert await reader.read() == payload
                    writer.close()
            finally:
                proc.terminate()
                await proc.wait()
            assert api.upgrades == ["spdy/3.1"]

    run(scenario())


@pytest.mark.parametrize("subprotocol", ["v5.channel.k8s.io", "v4.channel.k8s.io"])
def test_aiohttp_websocket_client(subprotocol: str) -> None:
    async def scenario() -> None:
        async with serving() as server, aiohttp.ClientSession() as http:
            url = server.get_exec(ExecRequest(CONTAINER, ["sh", "-c", "echo hi; exit 2"]))
            messages: list[bytes] = []
            async with http.ws_connect(url, protocols=[subprotocol]) as ws:
                assert ws.protocol == subprotocol
                async for message in ws:
                    assert message.type == aiohttp.WSMsgType.BINARY
                    messages.append(message.data)
            assert ws.close_code == 1000
            assert messages[0] == b"\x01"  # the empty "ready" message on stdout
            assert b"".join(m[1:] for m in messages if m[0] == 1) == b"hi\n"
            error = b"".join(m[1:] for m in messages if m[0] == 3)
            assert b'"reason":"NonZeroExitCode"' in error and b'"message":"2"' in error

    run(scenario())


def test_aiohttp_websocket_port_forward() -> None:
    async def scenario() -> None:
        async with serving() as server, echo_server() as port, aiohttp.ClientSession() as http:
            url = server.get_port_forward(PortForwardRequest(POD, [port]))
            async with http.ws_connect(url, protocols=["v4.channel.k8s.io"]) as ws:
                prefix = port.to_bytes(2, "little")
                assert {await ws.receive_bytes(), await ws.receive_bytes()} == {b"\x00" + prefix, b"\x01" + prefix}
                await ws.send_bytes(b"\x00ping")
                assert await ws.receive_bytes() == b"\x00ping"

    run(scenario())


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_curl_sees_http_errors() -> None:
    async def scenario() -> None:
        async with serving() as server:
            url = server.get_exec(ExecRequest(CONTAINER, ["true"]))
            spdy = ["-H", "Connection: Upgrade", "-H", "Upgrade: SPDY/3.1", "-H", "X-Stream-Protocol-Version: v9"]
            result = await asyncio.to_thread(_curl, "-X", "POST", *spdy, url)
            assert result.splitlines()[0].startswith("HTTP/1.1 403")
            assert "X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io" in result
            result = await asyncio.to_thread(_curl, url)  # the token was used by the refused upgrade
            assert result.splitlines()[0].startswith("HTTP/1.1 404") and result.endswith("404 page not found\n")

    run(scenario())


def _curl(*args: str) -> str:
    assert CURL is not None
    done = subprocess.run([CURL, "-sS", "-i", "--max-time", "10", *args], capture_output=True, check=True, timeout=20)
    return done.stdout.decode().replace("\r\n", "\n")
