"""The NRI connection multiplexer: framing without I/O, then the asyncio driver."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from google.protobuf import wrappers_pb2

from pycontainerd.nri.mux import (
    MAX_PAYLOAD,
    PLUGIN_SERVICE_CONN,
    RUNTIME_SERVICE_CONN,
    Mux,
    MuxDecoder,
    MuxError,
    encode_frames,
)
from pycontainerd.ttrpc import CallContext, Client, Server

from .helpers import run


def test_frame_layout_is_conn_id_then_length_big_endian() -> None:
    assert encode_frames(2, b"abc") == b"\x00\x00\x00\x02\x00\x00\x00\x03abc"
    assert encode_frames(1, b"") == b""


def test_reserved_and_out_of_range_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid"):
        encode_frames(0, b"x")
    with pytest.raises(ValueError, match="invalid"):
        encode_frames(1 << 32, b"x")


def test_long_writes_are_split_at_the_payload_limit() -> None:
    data = bytes(range(256)) * ((MAX_PAYLOAD * 2 + 100) // 256 + 1)
    wire = encode_frames(7, data)
    frames = MuxDecoder().feed(wire)
    assert [len(p) for _, p in frames] == [MAX_PAYLOAD, MAX_PAYLOAD, len(data) - 2 * MAX_PAYLOAD]
    assert {cid for cid, _ in frames} == {7}
    assert b"".join(p for _, p in frames) == data


def test_decoder_reassembles_byte_by_byte() -> None:
    wire = encode_frames(1, b"hello") + encode_frames(2, b"world!")
    decoder = MuxDecoder()
    got = []
    for i in range(len(wire)):
        got += decoder.feed(wire[i : i + 1])
        if i < len(wire) - 1:
            assert not decoder.idle or got
    assert got == [(1, b"hello"), (2, b"world!")]
    assert decoder.idle


def test_oversized_frame_is_a_protocol_error() -> None:
    with pytest.raises(MuxError, match="exceeds"):
        MuxDecoder().feed(struct.pack(">II", 1, MAX_PAYLOAD + 1))


async def _pair() -> tuple[Mux, Mux]:
    a, b = socket.socketpair()
    left = Mux(*await asyncio.open_unix_connection(sock=a))
    right = Mux(*await asyncio.open_unix_connection(sock=b))
    return left, right


def test_virtual_connections_are_independent_streams() -> None:
    async def main() -> None:
        left, right = await _pair()
        _l1, l1w = left.open(1)
        l2, l2w = left.open(2)
        r1, r1w = right.open(1)
        r2, r2w = right.open(2)
        left.start()
        right.start()
        l1w.write(b"to-one")
        l2w.write(b"to-two")
        r2w.write(b"back-on-two")
        assert await r1.readexactly(6) == b"to-one"
        assert await r2.readexactly(6) == b"to-two"
        assert await l2.readexactly(11) == b"back-on-two"
        # Frames for a connection the peer never opened are dropped, not misdelivered.
        left.send(9, b"nobody")
        l1w.write(b"!")
        assert await r1.readexactly(1) == b"!"
        await left.close()
        assert await r1.read() == b""
        assert await r2.read() == b""
        assert right.closed
        assert "closed by peer" in await right.wait_closed()
        for w in (l1w, l2w, r1w, r2w):
            w.close()

    run(main())


def test_open_twice_and_reserved_id_fail() -> None:
    async def main() -> None:
        left, right = await _pair()
        _reader, writer = left.open(1)  # keep the writer: dropping it closes the connection
        with pytest.raises(ValueError, match="already open"):
            left.open(1)
        with pytest.raises(ValueError, match="reserved"):
            left.open(0)
        await left.close()
        await right.close()
        with pytest.raises(ConnectionError):
            right.open(3)
        writer.close()

    run(main())


def test_garbage_on_the_trunk_closes_every_connection() -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        mux = Mux(*await asyncio.open_unix_connection(sock=a))
        reader, writer = mux.open(1)
        mux.start()
        b.sendall(struct.pack(">II", 1, MAX_PAYLOAD + 5))
        assert await reader.read() == b""
        assert "exceeds" in await mux.wait_closed()
        writer.close()
        b.close()

    run(main())


def test_ttrpc_in_both_directions_over_one_socket() -> None:
    """The NRI arrangement: each side serves on one id and calls on the other."""

    async def upper(ctx: CallContext, req: wrappers_pb2.StringValue) -> wrappers_pb2.StringValue:
        return wrappers_pb2.StringValue(value=req.value.upper())

    async def lower(ctx: CallContext, req: wrappers_pb2.StringValue) -> wrappers_pb2.StringValue:
        return wrappers_pb2.StringValue(value=req.value.lower())

    async def main() -> None:
        runtime, plugin = await _pair()
        plugin_server, runtime_server = Server(), Server()
        plugin_server.register("t.Plugin", {"Upper": (wrappers_pb2.StringValue, upper)})
        runtime_server.register("t.Runtime", {"Lower": (wrappers_pb2.StringValue, lower)})
        to_plugin = Client(*runtime.open(PLUGIN_SERVICE_CONN))
        to_runtime = Client(*plugin.open(RUNTIME_SERVICE_CONN))
        tasks = [
            asyncio.ensure_future(plugin_server.serve_connection(*plugin.open(PLUGIN_SERVICE_CONN))),
            asyncio.ensure_future(runtime_server.serve_connection(*runtime.open(RUNTIME_SERVICE_CONN))),
        ]
        runtime.start()
        plugin.start()
        s = wrappers_pb2.StringValue
        big = "x" * (5 << 20 >> 1)  # 2.5 MiB: several mux frames per ttrpc message
        up, low = await asyncio.gather(
            to_plugin.call("t.Plugin", "Upper", s(value=big), s, timeout=10),
            to_runtime.call("t.Runtime", "Lower", s(value="ABC"), s, timeout=10),
        )
        assert up.value == big.upper()
        assert low.value == "abc"
        await runtime.close()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        await to_plugin.close()
        await to_runtime.close()
        await plugin.close()
        await plugin_server.close()
        await runtime_server.close()

    run(main())
