"""Our ttrpc client against our ttrpc server over a real unix socket."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from google.protobuf import empty_pb2, wrappers_pb2

from pycontainerd.api.ttrpc import ttrpc_pb2
from pycontainerd.ttrpc import (
    MAX_MESSAGE_LENGTH,
    CallContext,
    Client,
    Code,
    Server,
    TTRPCConnectionError,
    TTRPCError,
)
from pycontainerd.ttrpc.frames import Frame, FrameDecoder, MessageType, encode_frame
from pycontainerd.ttrpc.protocol import encode_request

T = TypeVar("T")
SERVICE = "test.v1.Echo"
StringValue = wrappers_pb2.StringValue


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one test coroutine with an overall time limit."""

    async def limited() -> T:
        async with asyncio.timeout(30):
            return await coro

    return asyncio.run(limited())


async def upper(ctx: CallContext, request: StringValue) -> StringValue:
    return StringValue(value=request.value.upper())


def echo_server(**kwargs: Any) -> Server:
    server = Server(**kwargs)
    server.register(SERVICE, {"Upper": (StringValue, upper)})
    return server


@asynccontextmanager
async def serving(path: Path, server: Server | None = None) -> AsyncIterator[Server]:
    server = server or echo_server()
    await server.start(path)
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def connected(path: Path) -> AsyncIterator[Client]:
    client = await Client.connect(path)
    try:
        yield client
    finally:
        await client.close()


class RawConnection:
    """A hand-driven connection, to send what our client never would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()
        self.frames: list[Frame] = []

    async def next_frame(self) -> Frame:
        while not self.frames:
            data = await self.reader.read(65536)
            assert data, "server closed the connection"
            self.frames.extend(e for e in self.decoder.feed(data) if isinstance(e, Frame))
        return self.frames.pop(0)

    async def status(self) -> tuple[int, ttrpc_pb2.Response]:
        frame = await self.next_frame()
        assert frame.type == MessageType.RESPONSE
        response = ttrpc_pb2.Response()
        response.ParseFromString(frame.payload)
        return frame.stream_id, response


@asynccontextmanager
async def raw(path: Path) -> AsyncIterator[RawConnection]:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        yield RawConnection(reader, writer)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    path = tmp_path / "t.sock"
    assert len(os.fsencode(path)) < 108
    return path


def test_round_trip(sock_path: Path) -> None:
    async def main() -> None:
        async with serving(sock_path), connected(sock_path) as client:
            got = await client.call(SERVICE, "Upper", StringValue(value="hello"), StringValue)
            assert got == StringValue(value="HELLO")
            # Empty messages serialize to zero bytes; that must still work both ways.
            assert await client.call(SERVICE, "Upper", StringValue(), StringValue) == StringValue()

    run(main())
    assert not sock_path.exists()  # the server removes the socket file it created


def test_fifty_concurrent_calls_on_one_connection(sock_path: Path) -> None:
    in_flight = 0
    all_in = asyncio.Event()

    async def gather_then_answer(ctx: CallContext, request: StringValue) -> StringValue:
        nonlocal in_flight
        in_flight += 1
        if in_flight == 50:
            all_in.set()
        await all_in.wait()  # only returns once all 50 are being handled at the same time
        return StringValue(value=request.value * 2)

    async def main() -> None:
        server = Server()
        server.register(SERVICE, {"Twice": (StringValue, gather_then_answer)})
        async with serving(sock_path, server), connected(sock_path) as client:
            results = await asyncio.gather(
                *(client.call(SERVICE, "Twice", StringValue(value=str(i)), StringValue) for i in range(50))
            )
        assert [r.value for r in results] == [str(i) * 2 for i in range(50)]

    run(main())


def test_unknown_service_and_method_are_unimplemented(sock_path: Path) -> None:
    async def main() -> None:
        async with serving(sock_path), connected(sock_path) as client:
            with pytest.raises(TTRPCError) as info:
                await client.call("nope.v1.Nothing", "Upper", StringValue(), StringValue)
            assert (info.value.code, info.value.message) == (Code.UNIMPLEMENTED, "service nope.v1.Nothing")
            with pytest.raises(TTRPCError) as info:
                await client.call(SERVICE, "Lower", StringValue(), StringValue)
            assert (info.value.code, info.value.message) == (Code.UNIMPLEMENTED, "method Lower")

    run(main())


def failing(exc: BaseException) -> Callable[[CallContext, StringValue], Awaitable[StringValue]]:
    async def handler(ctx: CallContext, request: StringValue) -> StringValue:
        raise exc

    return handler


def test_handler_errors_become_statuses(sock_path: Path) -> None:
    class Conflict(Exception):
        pass

    def to_status(exc: BaseException) -> tuple[int, str]:
        if isinstance(exc, Conflict):
            return Code.ALREADY_EXISTS, f"conflict: {exc}"
        return Code.INTERNAL, "mapped"

    async def main() -> None:
        for server, method, expected in [
            (Server(), "Boom", (Code.UNKNOWN, "boom")),
            (Server(), "Missing", (Code.NOT_FOUND, "gone")),
            (Server(), "Status", (Code.FAILED_PRECONDITION, "not running")),
            (Server(error_to_status=to_status), "Conflict", (Code.ALREADY_EXISTS, "conflict: taken")),
            (Server(error_to_status=to_status), "Boom", (Code.INTERNAL, "mapped")),
            (Server(error_to_status=to_status), "Status", (Code.FAILED_PRECONDITION, "not running")),
        ]:
            server.register(
                SERVICE,
                {
                    "Boom": (StringValue, failing(ValueError("boom"))),
                    "Missing": (StringValue, failing(FileNotFoundError("gone"))),
                    "Status": (StringValue, failing(TTRPCError(Code.FAILED_PRECONDITION, "not running"))),
                    "Conflict": (StringValue, failing(Conflict("taken"))),
                    "Upper": (StringValue, upper),
                },
            )
            async with serving(sock_path, server), connected(sock_path) as client:
                with pytest.raises(TTRPCError) as info:
                    await client.call(SERVICE, method, StringValue(), StringValue)
                assert (info.value.code, info.value.message) == expected
                # The connection survives handler errors.
                assert (await client.call(SERVICE, "Upper", StringValue(value="e"), StringValue)).value == "E"

    run(main())


def test_bad_handler_results_and_payloads(sock_path: Path) -> None:
    async def returns_none(ctx: CallContext, request: StringValue) -> Any:
        return None

    async def main() -> None:
        server = echo_server()
        server.register("test.v1.Bad", {"None": (StringValue, returns_none)})
        async with serving(sock_path, server), connected(sock_path) as client:
            with pytest.raises(TTRPCError) as info:
                await client.call("test.v1.Bad", "None", StringValue(), StringValue)
            assert info.value.code == Code.UNKNOWN
            # A payload that is not a StringValue: its field 1 holds invalid UTF-8.
            with pytest.raises(TTRPCError) as info:
                await client.call(SERVICE, "Upper", wrappers_pb2.BytesValue(value=b"\xff"), StringValue)
            assert info.value.code == Code.INTERNAL
            assert "unmarshalling payload" in info.value.message

    run(main())


def test_metadata_and_timeout_reach_the_handler(sock_path: Path) -> None:
    seen: list[CallContext] = []

    async def record(ctx: CallContext, request: empty_pb2.Empty) -> StringValue:
        seen.append(ctx)
        return StringValue(value=ctx.get("Containerd-Namespace-TTRPC") or "")

    async def main() -> None:
        server = Server()
        server.register(SERVICE, {"Record": (empty_pb2.Empty, record)})
        async with serving(sock_path, server), connected(sock_path) as client:
            got = await client.call(
                SERVICE,
                "Record",
                empty_pb2.Empty(),
                StringValue,
                metadata={"containerd-namespace-ttrpc": "testns", "multi": ["a", "b"]},
                timeout=5,
            )
            assert got.value == "testns"
            await client.call(SERVICE, "Record", empty_pb2.Empty(), StringValue)
        with_md, without = seen
        assert with_md.metadata == {"containerd-namespace-ttrpc": ["testns"], "multi": ["a", "b"]}
        assert with_md.get_all("multi") == ["a", "b"]
        assert (with_md.service, with_md.method) == (SERVICE, "Record")
        assert with_md.timeout is not None and 4 < with_md.timeout <= 5
        assert with_md.deadline is not None
        assert without.metadata == {}
        assert without.timeout is None and without.deadline is None and without.time_remaining() is None
        assert without.peer is not None and without.peer.pid == os.getpid()

    run(main())


def test_timeout_cancels_handler_and_raises_deadline_exceeded(sock_path: Path) -> None:
    cancelled = asyncio.Event()

    async def slow(ctx: CallContext, request: StringValue) -> StringValue:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return request

    async def main() -> None:
        server = echo_server()
        server.register("test.v1.Slow", {"Slow": (StringValue, slow)})
        async with serving(sock_path, server), connected(sock_path) as client:
            with pytest.raises(TTRPCError) as info:
                await client.call("test.v1.Slow", "Slow", StringValue(), StringValue, timeout=0.2)
            assert info.value.code == Code.DEADLINE_EXCEEDED
            await asyncio.wait_for(cancelled.wait(), 5)
            with pytest.raises(TTRPCError) as info:
                await client.call(SERVICE, "Upper", StringValue(), StringValue, timeout=0)
            assert info.value.code == Code.DEADLINE_EXCEEDED
            # The server enforces the deadline it was sent, independently of the client.
            async with raw(sock_path) as conn:
                payload = encode_request("test.v1.Slow", "Slow", b"", timeout_nano=50_000_000)
                conn.writer.write(encode_frame(1, MessageType.REQUEST, payload))
                stream_id, response = await conn.status()
                assert (stream_id, response.status.code) == (1, Code.DEADLINE_EXCEEDED)
            assert (await client.call(SERVICE, "Upper", StringValue(value="x"), StringValue)).value == "X"

    run(main())


def test_oversize_payloads(sock_path: Path) -> None:
    async def huge(ctx: CallContext, request: StringValue) -> StringValue:
        return StringValue(value="x" * (MAX_MESSAGE_LENGTH + 1))

    async def main() -> None:
        server = echo_server()
        server.register("test.v1.Huge", {"Huge": (StringValue, huge)})
        async with serving(sock_path, server), connected(sock_path) as client:
            big = StringValue(value="x" * MAX_MESSAGE_LENGTH)
            with pytest.raises(TTRPCError) as info:
                await client.call(SERVICE, "Upper", big, StringValue)
            assert info.value.code == Code.RESOURCE_EXHAUSTED
            assert "exceed maximum message size" in info.value.message
            with pytest.raises(TTRPCError) as info:
                await client.call("test.v1.Huge", "Huge", StringValue(), StringValue)
            assert info.value.code == Code.RESOURCE_EXHAUSTED
            # Just under the limit goes through.
            fits = StringValue(value="y" * (MAX_MESSAGE_LENGTH - 100))
            assert (await client.call(SERVICE, "Upper", fits, StringValue)).value == "Y" * (MAX_MESSAGE_LENGTH - 100)
            # An oversized frame reaching the server is skipped and answered, as Go does.
            async with raw(sock_path) as conn:
                length = MAX_MESSAGE_LENGTH + 1
                conn.writer.write(length.to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x01\x00" + b"\0" * length)
                stream_id, response = await conn.status()
                assert (stream_id, response.status.code) == (1, Code.RESOURCE_EXHAUSTED)
                payload = encode_request(SERVICE, "Upper", StringValue(value="ok").SerializeToString())
                conn.writer.write(encode_frame(3, MessageType.REQUEST, payload))
                stream_id, response = await conn.status()
                assert (stream_id, response.status.code, response.payload) == (3, Code.OK, b"\n\x02OK")

    run(main())


def test_protocol_violations_are_answered_like_go(sock_path: Path) -> None:
    async def main() -> None:
        async with serving(sock_path), raw(sock_path) as conn:
            good = encode_request(SERVICE, "Upper", StringValue(value="a").SerializeToString())
            conn.writer.write(encode_frame(2, MessageType.REQUEST, good))
            assert (await conn.status())[1].status.code == Code.INVALID_ARGUMENT
            conn.writer.write(encode_frame(5, MessageType.REQUEST, b"\xff\xff"))
            stream_id, response = await conn.status()
            assert (stream_id, response.status.code) == (5, Code.INVALID_ARGUMENT)
            assert response.status.message.startswith("unmarshal request error")
            conn.writer.write(encode_frame(5, MessageType.REQUEST, good))  # reused id
            assert "must increment" in (await conn.status())[1].status.message
            conn.writer.write(encode_frame(7, MessageType.DATA, b""))
            assert (await conn.status())[1].status.code == Code.INVALID_ARGUMENT
            conn.writer.write(encode_frame(9, 0x7F, b"future"))  # unknown type: ignored
            conn.writer.write(encode_frame(11, MessageType.REQUEST, good))
            stream_id, response = await conn.status()
            assert (stream_id, response.status.code, response.payload) == (11, Code.OK, b"\n\x01A")

    run(main())


def test_garbage_closes_only_that_connection(sock_path: Path) -> None:
    async def main() -> None:
        async with serving(sock_path), connected(sock_path) as bystander:
            async with raw(sock_path) as conn:
                conn.writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert await asyncio.wait_for(conn.reader.read(), 5) == b""
            async with raw(sock_path) as conn:
                conn.writer.write(encode_frame(1, MessageType.REQUEST, b"")[:7])  # then vanish mid-header
            async with connected(sock_path) as client:
                assert (await client.call(SERVICE, "Upper", StringValue(value="b"), StringValue)).value == "B"
            assert (await bystander.call(SERVICE, "Upper", StringValue(value="c"), StringValue)).value == "C"

    run(main())


def test_server_close_fails_pending_calls(sock_path: Path) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def hang(ctx: CallContext, request: StringValue) -> StringValue:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return request

    async def main() -> None:
        server = echo_server()
        server.register("test.v1.Hang", {"Hang": (StringValue, hang)})
        await server.start(sock_path)
        async with connected(sock_path) as client:
            pending = [
                asyncio.ensure_future(client.call("test.v1.Hang", "Hang", StringValue(), StringValue)) for _ in range(3)
            ]
            await started.wait()
            await server.close()
            assert cancelled.is_set()
            for call in pending:
                with pytest.raises(TTRPCConnectionError, match=r"^ttrpc: closed: connection closed by server$"):
                    await call
            assert client.closed
            assert "closed" in await client.wait_closed()
            with pytest.raises(TTRPCConnectionError):
                await client.call(SERVICE, "Upper", StringValue(), StringValue)
        with pytest.raises(TTRPCConnectionError, match="cannot connect"):
            await Client.connect(sock_path)

    run(main())


def test_graceful_close_lets_calls_finish(sock_path: Path) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def wait_release(ctx: CallContext, request: StringValue) -> StringValue:
        started.set()
        await release.wait()
        return StringValue(value="done")

    async def main() -> None:
        server = Server()
        server.register(SERVICE, {"Wait": (StringValue, wait_release)})
        await server.start(sock_path)
        async with connected(sock_path) as client:
            call = asyncio.ensure_future(client.call(SERVICE, "Wait", StringValue(), StringValue))
            await started.wait()
            assert server.active_calls == 1
            closing = asyncio.ensure_future(server.close(grace=10))
            await asyncio.sleep(0.05)
            assert not server.sockets  # no longer accepting
            release.set()
            assert (await call).value == "done"
            await closing

    run(main())


def test_client_close_fails_its_pending_calls(sock_path: Path) -> None:
    started = asyncio.Event()
    ended = asyncio.Event()

    async def hang(ctx: CallContext, request: StringValue) -> StringValue:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            ended.set()
        return request

    async def main() -> None:
        server = Server()
        server.register(SERVICE, {"Hang": (StringValue, hang)})
        async with serving(sock_path, server):
            client = await Client.connect(f"unix://{sock_path}")
            call = asyncio.ensure_future(client.call(SERVICE, "Hang", StringValue(), StringValue))
            await started.wait()
            await client.close()
            with pytest.raises(TTRPCConnectionError):
                await call
            # The server notices the departure and cancels the handler.
            await ended.wait()

    run(main())


def test_serving_an_inherited_socket_and_peer_check(sock_path: Path) -> None:
    async def main() -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(os.fspath(sock_path))
        listener.listen()
        server = echo_server(require_same_user=True)
        await server.start(sock=listener)
        try:
            assert server.sockets
            async with connected(sock_path) as client:
                assert (await client.call(SERVICE, "Upper", StringValue(value="d"), StringValue)).value == "D"
        finally:
            await server.close()

    run(main())


def test_register_and_start_misuse() -> None:
    server = echo_server()
    with pytest.raises(ValueError, match="duplicate"):
        server.register(SERVICE, {})

    async def main() -> None:
        with pytest.raises(ValueError, match="exactly one"):
            await server.start()

    run(main())
