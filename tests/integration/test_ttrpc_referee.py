"""Our ttrpc against Go's: the Debian runc shim as server, Debian's ctr as client.

* Our client drives a real ``containerd-shim-runc-v2`` (Go ttrpc server): Connect,
  error statuses, concurrency, Go's answers to malformed frames, then Shutdown.
* Go's client (``ctr shim ... state``) calls our server, which listens where ctr
  expects a shim socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2, message_factory
from google.protobuf.message import Message

from pycontainerd.api.ttrpc import ttrpc_pb2
from pycontainerd.ttrpc import MAX_MESSAGE_LENGTH, CallContext, Client, Code, Server, TTRPCConnectionError, TTRPCError
from pycontainerd.ttrpc.frames import Frame, FrameDecoder, MessageType, encode_frame
from pycontainerd.ttrpc.protocol import encode_request

pytestmark = [pytest.mark.root, pytest.mark.integration]

T = TypeVar("T")
SHIM = Path("/usr/bin/containerd-shim-runc-v2")
REPO = Path(__file__).resolve().parents[2]
SHIM_PROTO = REPO / "proto" / "containerd" / "runtime" / "task" / "v2" / "shim.proto"
TASK = "containerd.task.v2.Task"
NAMESPACE = "testns"
NS_KEY = "containerd-namespace-ttrpc"
SHIM_SOCKET_DIR = Path("/run/containerd/s")

if not SHIM.exists():
    pytest.skip(f"{SHIM} is not installed", allow_module_level=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def limited() -> T:
        async with asyncio.timeout(90):
            return await coro

    return asyncio.run(limited())


# --- the shim's messages, kept out of the default descriptor pool ------------------------

_FIELDS: dict[str, list[tuple[str, int, int]]] = {
    "ConnectRequest": [("id", 1, descriptor_pb2.FieldDescriptorProto.TYPE_STRING)],
    "ConnectResponse": [
        ("shim_pid", 1, descriptor_pb2.FieldDescriptorProto.TYPE_UINT32),
        ("task_pid", 2, descriptor_pb2.FieldDescriptorProto.TYPE_UINT32),
        ("version", 3, descriptor_pb2.FieldDescriptorProto.TYPE_STRING),
    ],
    "ShutdownRequest": [
        ("id", 1, descriptor_pb2.FieldDescriptorProto.TYPE_STRING),
        ("now", 2, descriptor_pb2.FieldDescriptorProto.TYPE_BOOL),
    ],
    "StateRequest": [
        ("id", 1, descriptor_pb2.FieldDescriptorProto.TYPE_STRING),
        ("exec_id", 2, descriptor_pb2.FieldDescriptorProto.TYPE_STRING),
    ],
    # A prefix of the real StateResponse: enough for this test.
    "StateResponse": [
        ("id", 1, descriptor_pb2.FieldDescriptorProto.TYPE_STRING),
        ("bundle", 2, descriptor_pb2.FieldDescriptorProto.TYPE_STRING),
        ("pid", 3, descriptor_pb2.FieldDescriptorProto.TYPE_UINT32),
    ],
    "DeleteRequest": [
        ("id", 1, descriptor_pb2.FieldDescriptorProto.TYPE_STRING),
        ("exec_id", 2, descriptor_pb2.FieldDescriptorProto.TYPE_STRING),
    ],
}


def _compiled_pool(tmp: Path) -> descriptor_pool.DescriptorPool | None:
    """shim.proto compiled by protoc into a private pool, when the proto and protoc exist."""
    if not SHIM_PROTO.exists():
        return None
    try:
        import grpc_tools  # type: ignore[import-untyped]
    except ImportError:
        return None
    out = tmp / "shim.pb"
    includes = [REPO / "proto", Path(grpc_tools.__file__).parent / "_proto"]
    cmd = [sys.executable, "-m", "grpc_tools.protoc", *(f"-I{p}" for p in includes)]
    cmd += ["--include_imports", f"--descriptor_set_out={out}", str(SHIM_PROTO.relative_to(REPO / "proto"))]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        return None
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:  # dependencies come first
        pool.Add(file)
    return pool


def _hand_built_pool() -> descriptor_pool.DescriptorPool:
    file = descriptor_pb2.FileDescriptorProto(name="referee/shim.proto", package="containerd.task.v2", syntax="proto3")
    for name, fields in _FIELDS.items():
        msg = file.message_type.add(name=name)
        for field_name, number, kind in fields:
            msg.field.add(
                name=field_name, number=number, type=kind, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
            )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool


def shim_messages(tmp: Path) -> dict[str, type[Any]]:
    pool = _compiled_pool(tmp) or _hand_built_pool()
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"containerd.task.v2.{name}"))
        for name in _FIELDS
    }


# --- helpers -----------------------------------------------------------------------------


def pid_gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie nobody reaps yet counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


async def wait_gone(pid: int, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while not pid_gone(pid):
        if loop.time() > until:
            return False
        await asyncio.sleep(0.05)
    return True


@contextlib.asynccontextmanager
async def drained_fifo(path: Path) -> AsyncIterator[bytearray]:
    """Keep a reader on the shim's ``log`` fifo (its open blocks without one) and collect it."""
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    collected = bytearray()

    def drain() -> None:
        with contextlib.suppress(BlockingIOError):
            collected.extend(os.read(fd, 65536))

    loop = asyncio.get_running_loop()
    loop.add_reader(fd, drain)
    try:
        yield collected
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def raw_status(reader: asyncio.StreamReader, decoder: FrameDecoder) -> tuple[int, Any]:
    """The next response frame from a hand-driven connection, decoded."""
    while True:
        data = await asyncio.wait_for(reader.read(65536), 10)
        assert data, "peer closed the connection"
        frames = [e for e in decoder.feed(data) if isinstance(e, Frame)]
        if frames:
            (frame,) = frames
            assert frame.type == MessageType.RESPONSE
            return frame.stream_id, ttrpc_pb2.Response.FromString(frame.payload)


def go_socket_address(address: str, namespace: str, shim_id: str) -> Path:
    """Where containerd (and ctr) expect a runtime v2 shim socket: ``shim.SocketAddress``."""
    digest = hashlib.sha256(os.path.normpath(os.path.join(address, namespace, shim_id)).encode()).hexdigest()
    return SHIM_SOCKET_DIR / digest


# --- our client, Go's server ---------------------------------------------------------------


def test_our_client_against_the_go_shim(tmp_path: Path) -> None:
    msgs = shim_messages(tmp_path)
    shim_id = f"referee-{uuid.uuid4().hex[:12]}"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"ociVersion": "1.0.2"}))  # `start` reads the spec
    address = str(tmp_path / "containerd.sock")  # never dialled; it only seeds the socket name
    forwarded: list[CallContext] = []

    async def forward(ctx: CallContext, request: empty_pb2.Empty) -> empty_pb2.Empty:
        forwarded.append(ctx)
        return empty_pb2.Empty()

    async def main() -> None:
        events = Server()
        events.register("containerd.services.events.ttrpc.v1.Events", {"Forward": (empty_pb2.Empty, forward)})
        await events.start(tmp_path / "ev.sock")
        shim_pid = 0
        socket_path: Path | None = None
        async with drained_fifo(bundle / "log") as shim_log:
            try:
                env = {
                    "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                    "TTRPC_ADDRESS": str(tmp_path / "ev.sock"),
                }
                proc = await asyncio.create_subprocess_exec(
                    str(SHIM), "-namespace", NAMESPACE, "-address", address, "-publish-binary", "/bin/true",
                    "-id", shim_id, "start",
                    cwd=bundle, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                )  # fmt: skip
                out, err = await asyncio.wait_for(proc.communicate(), 30)
                assert proc.returncode == 0, f"shim start failed: {err.decode()} {shim_log.decode()}"
                socket_path = Path(out.decode().strip().removeprefix("unix://"))
                assert socket_path.is_socket()
                md = {NS_KEY: NAMESPACE}

                async with await Client.connect(socket_path, timeout=10) as client:
                    connect = await client.call(
                        TASK,
                        "Connect",
                        msgs["ConnectRequest"](id=shim_id),
                        msgs["ConnectResponse"],
                        metadata=md,
                        timeout=10,
                    )
                    shim_pid = connect.shim_pid
                    assert shim_pid > 0
                    assert b"containerd-shim-runc-v2" in cmdline(shim_pid)
                    assert connect.task_pid == 0  # no task was created

                    # Go's statuses reach us with their codes and messages.
                    with pytest.raises(TTRPCError) as info:
                        await client.call(
                            TASK, "State", msgs["StateRequest"](id=shim_id), msgs["StateResponse"], metadata=md
                        )
                    assert info.value.code == Code.NOT_FOUND
                    with pytest.raises(TTRPCError) as info:
                        await client.call(TASK, "NoSuchMethod", empty_pb2.Empty(), empty_pb2.Empty, metadata=md)
                    assert (info.value.code, info.value.message) == (Code.UNIMPLEMENTED, "method NoSuchMethod")
                    with pytest.raises(TTRPCError) as info:
                        await client.call("no.Such", "Thing", empty_pb2.Empty(), empty_pb2.Empty, metadata=md)
                    assert (info.value.code, info.value.message) == (Code.UNIMPLEMENTED, "service no.Such")

                    # Many calls multiplexed on one connection to Go's server.
                    replies = await asyncio.gather(
                        *(
                            client.call(
                                TASK,
                                "Connect",
                                msgs["ConnectRequest"](id=shim_id),
                                msgs["ConnectResponse"],
                                metadata=md,
                            )
                            for _ in range(50)
                        )
                    )
                    assert {r.shim_pid for r in replies} == {shim_pid}

                    # Too big to send: refused locally, and the connection is still fine.
                    big = msgs["ConnectRequest"](id="x" * MAX_MESSAGE_LENGTH)
                    with pytest.raises(TTRPCError) as info:
                        await client.call(TASK, "Connect", big, msgs["ConnectResponse"], metadata=md)
                    assert info.value.code == Code.RESOURCE_EXHAUSTED

                    await probe_go_server_with_bad_frames(socket_path, msgs, shim_id)

                    try:
                        await client.call(
                            TASK,
                            "Shutdown",
                            msgs["ShutdownRequest"](id=shim_id),
                            empty_pb2.Empty,
                            metadata=md,
                            timeout=10,
                        )
                    except TTRPCConnectionError:
                        pass  # the shim may exit before its answer is flushed; containerd tolerates that too
                    await asyncio.wait_for(client.wait_closed(), 10)
                assert await wait_gone(shim_pid, 15), f"shim {shim_pid} still running after Shutdown"
            finally:
                if shim_pid and not pid_gone(shim_pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(shim_pid, signal.SIGKILL)
                    await wait_gone(shim_pid, 5)
                if socket_path is not None:
                    with contextlib.suppress(FileNotFoundError):
                        socket_path.unlink()
                await events.close()

    run(main())


async def probe_go_server_with_bad_frames(socket_path: Path, msgs: dict[str, type[Any]], shim_id: str) -> None:
    """What Go's server does with frames our client never sends (facts our server mirrors)."""
    reader, writer = await asyncio.open_unix_connection(socket_path)
    decoder = FrameDecoder()
    try:
        good = encode_request(
            TASK, "Connect", msgs["ConnectRequest"](id=shim_id).SerializeToString(), metadata={NS_KEY: NAMESPACE}
        )
        # Oversized frame: Go skips its data and answers RESOURCE_EXHAUSTED on that stream.
        length = MAX_MESSAGE_LENGTH + 1
        writer.write(length.to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x01\x00" + b"\0" * length)
        stream_id, response = await raw_status(reader, decoder)
        assert (stream_id, response.status.code) == (1, Code.RESOURCE_EXHAUSTED)
        # Even (server-side) stream ids are refused with INVALID_ARGUMENT.
        writer.write(encode_frame(4, MessageType.REQUEST, good))
        stream_id, response = await raw_status(reader, decoder)
        assert (stream_id, response.status.code) == (4, Code.INVALID_ARGUMENT)
        # A request that is not a ttrpc.Request: INVALID_ARGUMENT, connection kept.
        writer.write(encode_frame(5, MessageType.REQUEST, b"\xff\xff"))
        stream_id, response = await raw_status(reader, decoder)
        assert (stream_id, response.status.code) == (5, Code.INVALID_ARGUMENT)
        # And the connection still serves.
        writer.write(encode_frame(7, MessageType.REQUEST, good))
        stream_id, response = await raw_status(reader, decoder)
        assert (stream_id, response.status.code) == (7, Code.OK)
        assert msgs["ConnectResponse"].FromString(response.payload).shim_pid > 0
    finally:
        writer.close()
        await writer.wait_closed()


# --- Go's client, our server ---------------------------------------------------------------


@pytest.mark.skipif(shutil.which("ctr") is None, reason="Debian's ctr is not installed")
def test_go_client_against_our_server(tmp_path: Path) -> None:
    msgs = shim_messages(tmp_path)
    shim_id = f"referee-{uuid.uuid4().hex[:12]}"
    address = str(tmp_path / "containerd.sock")
    socket_path = go_socket_address(address, NAMESPACE, shim_id)
    seen: list[CallContext] = []

    async def state(ctx: CallContext, request: Any) -> Message:
        seen.append(ctx)
        response: Message = msgs["StateResponse"](id=request.id, bundle="/referee/bundle", pid=4242)
        return response

    async def delete(ctx: CallContext, request: Any) -> Message:
        raise TTRPCError(Code.NOT_FOUND, f"task {request.id}: not found")

    async def ctr(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            "ctr", "--address", address, "--namespace", NAMESPACE, "shim", "--id", shim_id, *args,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    SHIM_SOCKET_DIR.mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        server = Server()
        server.register(TASK, {"State": (msgs["StateRequest"], state), "Delete": (msgs["DeleteRequest"], delete)})
        await server.start(socket_path)
        try:
            rc, out, err = await ctr("state")
            assert rc == 0, err
            got = json.loads(out)
            assert (got["id"], got["bundle"], got["pid"]) == (shim_id, "/referee/bundle", 4242)
            assert seen and seen[0].timeout is None  # ctr sends no deadline
            rc, out, err = await ctr("delete", shim_id)
            assert rc != 0
            assert "NotFound" in err and f"task {shim_id}: not found" in err, err
        finally:
            await server.close()
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()

    run(main())
