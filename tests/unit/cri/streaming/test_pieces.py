"""The small pure pieces: HTTP heads, Status JSON, resize decoding, buffers."""

from __future__ import annotations

import asyncio
import json

import pytest

from pycontainerd.cri.streaming import status as st
from pycontainerd.cri.streaming.api import ExecRequest, PortForwardRequest, TerminalSize
from pycontainerd.cri.streaming.http1 import HttpError, error_response, is_websocket, negotiate, parse_head
from pycontainerd.cri.streaming.pipe import InboundBuffer, ResizeDecoder, ResizeQueue

from .helpers import run


def test_request_head() -> None:
    head = parse_head(
        b"POST /exec/abc?x=1&x=2 HTTP/1.1\r\nHost: h\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
        b"x-stream-protocol-version: v3.channel.k8s.io, channel.k8s.io\r\nConnection: keep-alive, Upgrade\r\n"
        b"Upgrade: websocket\r\n\r\n"
    )
    assert (head.method, head.path, head.query) == ("POST", "/exec/abc", {"x": ["1", "2"]})
    assert head.tokens("X-Stream-Protocol-Version") == ["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"]
    assert head.get("host") == "h" and head.get("missing") is None
    assert is_websocket(head)


@pytest.mark.parametrize(
    "raw",
    [b"", b"GET\r\n\r\n", b"GET / HTTP/1.1\r\nno colon\r\n\r\n", b"G(T / HTTP/1.1\r\n\r\n", b"GET / SPDY\r\n\r\n"],
)
def test_malformed_heads(raw: bytes) -> None:
    with pytest.raises(HttpError) as failed:
        parse_head(raw)
    assert failed.value.status == 400


def test_error_response_is_gos_http_error() -> None:
    response = error_response(404, "404 page not found")
    head = parse_head(response.split(b"\r\n\r\n")[0], response=True)
    assert head.status == 404 and head.get("Content-Type") == "text/plain; charset=utf-8"
    assert response.endswith(b"\r\n\r\n404 page not found\n")


def test_negotiate_prefers_the_clients_order() -> None:
    assert negotiate(["b", "a"], ["a", "b"]) == "b"
    assert negotiate(["c"], ["a"]) is None


def test_status_json_is_byte_for_byte_gos() -> None:
    assert st.success().to_json() == b'{"metadata":{},"status":"Success"}'
    assert st.non_zero_exit(["sh", "-c", "exit 3"], 3).to_json() == (
        b'{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: '
        b'error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode",'
        b'"details":{"causes":[{"reason":"ExitCode","message":"3"}]}}'
    )
    internal = st.internal_error("boom <&>")
    assert internal.to_json() == (
        b'{"metadata":{},"status":"Failure","message":"Internal error occurred: boom \\u003c\\u0026\\u003e",'
        b'"reason":"InternalError","details":{"causes":[{"message":"boom \\u003c\\u0026\\u003e"}]},"code":500}'
    )
    assert st.success().to_text() == b"" and internal.to_text() == b"Internal error occurred: boom <&>"
    assert st.port_forward_error("no", close_connection=True) == b'{"closeConnection":true,"message":"no"}\n'


def test_parse_exit_code() -> None:
    assert st.parse_exit_code(b"") == 0
    assert st.parse_exit_code(st.success().to_json()) == 0
    assert st.parse_exit_code(st.non_zero_exit(["x"], 42).to_json()) == 42
    assert st.parse_exit_code(st.internal_error("x").to_json()) is None


def test_resize_decoder_takes_chunks_and_go_field_rules() -> None:
    decoder = ResizeDecoder()
    wire = b'{"Width":80,"Height":24}\n{"width": 100, "HEIGHT": 40, "extra": 1}{"Width":1,'
    sizes = [size for i in range(len(wire)) for size in decoder.feed(wire[i : i + 1])]
    assert sizes == [TerminalSize(80, 24), TerminalSize(100, 40)]
    assert decoder.feed(b'"Height":2}') == [TerminalSize(1, 2)]
    assert decoder.feed(b"[1, 2]") == [] and decoder.broken
    assert decoder.feed(b'{"Width":3,"Height":4}') == []


def test_resize_queue_ends_with_its_source() -> None:
    async def scenario() -> None:
        buffer = InboundBuffer()
        queue = ResizeQueue()
        pump = asyncio.ensure_future(queue.pump(_Reader(buffer)))
        buffer.feed(json.dumps({"Width": 5, "Height": 6}).encode())
        buffer.feed_eof()
        assert [size async for size in queue] == [TerminalSize(5, 6)]
        assert [size async for size in queue] == []
        await pump

    run(scenario())


class _Reader:
    def __init__(self, buffer: InboundBuffer) -> None:
        self.buffer = buffer

    async def read(self, n: int = 65536) -> bytes:
        return await self.buffer.read(n)


def test_inbound_buffer() -> None:
    async def scenario() -> None:
        consumed: list[int] = []
        buffer = InboundBuffer(consumed.append)
        buffer.feed(b"hello")
        buffer.feed(b"world")
        assert await buffer.read(3) == b"hel"
        assert await buffer.read() == b"lo"
        assert await buffer.read() == b"world"
        waiter = asyncio.ensure_future(buffer.read())
        await asyncio.sleep(0)
        assert not waiter.done()  # nothing buffered: the reader waits
        buffer.feed_eof()
        assert await waiter == b""
        assert await buffer.read() == b"" and buffer.at_eof
        buffer.feed(b"late")  # after EOF: dropped, but still counted as consumed (windows stay open)
        assert consumed == [3, 2, 5, 4]
        discarding = InboundBuffer(consumed.append)
        discarding.feed(b"abc")
        discarding.discard()
        discarding.feed(b"de")
        assert await discarding.read() == b"" and consumed[-2:] == [3, 2]

    run(scenario())


def test_requests_from_cri_messages() -> None:
    class Message:
        container_id, cmd, tty, stdin, stdout, stderr = "c", ("ls", "-l"), False, True, True, False
        pod_sandbox_id, port = "p", (80, 443)

    assert ExecRequest.from_message(Message()) == ExecRequest("c", ["ls", "-l"], stdin=True, stderr=False)
    assert PortForwardRequest.from_message(Message()) == PortForwardRequest("p", [80, 443])
