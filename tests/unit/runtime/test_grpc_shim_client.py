"""The shim client over gRPC against the shim's gRPC server (both ours), over a real unix socket.

The server side wraps a ttrpc-style method table, as the runc shim's TaskService provides it;
the client side is :class:`ShimClient` as the task manager uses it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pycontainerd import errdefs
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.runc_shim.grpc_server import GrpcServer
from pycontainerd.runtime.v2.config import RuntimeEntry
from pycontainerd.runtime.v2.shim import (
    PROTOCOL_ENV,
    TASK_SERVICE_V3,
    Bootstrap,
    ShimClient,
    parse_start_output,
    shim_env,
)
from pycontainerd.ttrpc.server import CallContext

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def limited() -> T:
        async with asyncio.timeout(30):
            return await coro

    return asyncio.run(limited())


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Short: unix socket paths are limited to 108 bytes, pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="grpcshim-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class FakeTasks:
    """A Task API method table like the runc shim's, recording what it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, str]] = []

    def methods(self) -> dict[str, tuple[type[Any], Any]]:
        return {"State": (shim_pb2.StateRequest, self.state), "Delete": (shim_pb2.DeleteRequest, self.delete)}

    async def state(self, ctx: CallContext, req: shim_pb2.StateRequest) -> shim_pb2.StateResponse:
        self.seen.append((ctx.method, ctx.get("containerd-namespace"), req.id))
        if req.id == "missing":
            raise errdefs.NotFound(f"container {req.id}: not found")
        if req.id == "slow":
            await asyncio.sleep(5)
        return shim_pb2.StateResponse(id=req.id, pid=42, bundle="/b")

    async def delete(self, ctx: CallContext, req: shim_pb2.DeleteRequest) -> shim_pb2.DeleteResponse:
        raise RuntimeError("runc delete failed: boom")


@asynccontextmanager
async def serving(path: Path, tasks: FakeTasks) -> AsyncIterator[GrpcServer]:
    server = GrpcServer()
    server.register(TASK_SERVICE_V3, tasks.methods())
    await server.start(str(path))
    try:
        yield server
    finally:
        await server.close(grace=0)


def test_calls_errors_and_namespace(sock_dir: Path) -> None:
    path = sock_dir / "s"
    tasks = FakeTasks()

    async def main() -> None:
        async with serving(path, tasks):
            assert path.stat().st_mode & 0o777 == 0o600, "only our own user may connect"
            client = await ShimClient.connect(Bootstrap(str(path), "grpc", 3), "ns1")
            try:
                reply = await client.call("State", shim_pb2.StateRequest(id="c1"), shim_pb2.StateResponse)
                assert (reply.id, reply.pid) == ("c1", 42)
                with pytest.raises(errdefs.NotFound, match="container missing: not found"):
                    await client.call("State", shim_pb2.StateRequest(id="missing"), shim_pb2.StateResponse)
                with pytest.raises(errdefs.Unknown, match="boom"):
                    await client.call("Delete", shim_pb2.DeleteRequest(id="c1"), shim_pb2.DeleteResponse)
                with pytest.raises(errdefs.DeadlineExceeded):
                    await client.call("State", shim_pb2.StateRequest(id="slow"), shim_pb2.StateResponse, 0.2)
                with pytest.raises(errdefs.Unimplemented):
                    await client.call("Pids", shim_pb2.PidsRequest(id="c1"), shim_pb2.PidsResponse)
            finally:
                await client.close()
            assert await client.wait_closed() == "closed"
            with pytest.raises(errdefs.Unavailable):
                await client.call("State", shim_pb2.StateRequest(id="c1"), shim_pb2.StateResponse)

    run(main())
    assert tasks.seen[0] == ("State", "ns1", "c1"), "the namespace rides in gRPC metadata"
    assert not path.exists(), "the server removes its socket"


def test_a_vanished_shim_is_noticed(sock_dir: Path) -> None:
    path = sock_dir / "s"

    async def main() -> None:
        async with serving(path, FakeTasks()) as server:
            client = await ShimClient.connect(Bootstrap(f"unix://{path}", "grpc", 3), "ns1")
            await client.call("State", shim_pb2.StateRequest(id="c1"), shim_pb2.StateResponse)
            await server.close(grace=0)
            reason = await asyncio.wait_for(client.wait_closed(), 10)
            assert "refuses connections" in reason
            with pytest.raises(errdefs.Unavailable):
                await client.call("State", shim_pb2.StateRequest(id="c1"), shim_pb2.StateResponse)
            await client.close()

    run(main())


def test_connect_to_nothing_is_unavailable(sock_dir: Path) -> None:
    async def main() -> None:
        with pytest.raises(errdefs.Unavailable, match="dial unix"):
            await ShimClient.connect(Bootstrap(str(sock_dir / "absent"), "grpc", 3), "ns1")
        with pytest.raises(errdefs.FailedPrecondition, match="unsupported shim protocol 'carrier-pigeon'"):
            await ShimClient.connect(Bootstrap(str(sock_dir / "absent"), "carrier-pigeon", 3), "ns1")

    run(main())


def test_bootstrap_forms() -> None:
    grpc_boot = parse_start_output(json.dumps({"version": 3, "address": "/run/x/s", "protocol": "GRPC"}).encode())
    assert grpc_boot == Bootstrap("/run/x/s", "grpc", 3)
    assert Bootstrap("grpc+unix:///run/x/s", "grpc", 3).socket_path == "/run/x/s"
    with pytest.raises(errdefs.Unimplemented, match="unsupported shim version"):
        parse_start_output(b'{"version": 4, "address": "/s", "protocol": "grpc"}')
    # A version below 2 is a legacy answer: the whole output is a ttrpc address.
    assert parse_start_output(b"unix:///run/y").protocol == "ttrpc"


def test_the_shim_template_and_the_task_manager_do_not_load_grpc() -> None:
    # The template forks every shim: grpc in it would be in every ttrpc shim's memory (and grpc
    # is not fork-safe once used). The manager loads it only for a gRPC shim.
    code = (
        "import sys\n"
        "import pycontainerd.runc_shim.zygote, pycontainerd.runtime.v2.manager\n"
        "print(','.join(sorted(m for m in sys.modules if m == 'grpc' or m.startswith('grpc.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


def test_runtime_protocol_config() -> None:
    RuntimeEntry(path="containerd-shim-pyrunc-v2", protocol="grpc").validate("io.containerd.pygrpc.v2")
    assert RuntimeEntry().protocol == "ttrpc"
    with pytest.raises(errdefs.InvalidArgument, match=r'runtimes\."r"\.protocol: unknown protocol \'http\''):
        RuntimeEntry(protocol="http").validate("r")
    env = shim_env("ns", "/d.sock", "/d.sock.ttrpc", "grpc")
    assert env[PROTOCOL_ENV] == "grpc"
    assert PROTOCOL_ENV not in shim_env("ns", "/d.sock", "/d.sock.ttrpc")
