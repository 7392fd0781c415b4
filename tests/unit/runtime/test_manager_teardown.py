"""The task manager when a shim fails to delete its task: the task is torn down unless it runs.

The "shim" is a fake Task API served over gRPC (our shim's gRPC server around a method table);
the manager finds it the way it finds shims after a restart, from the bundle's bootstrap.json.
Its ``delete`` binary is a script that records the call.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from google.protobuf import empty_pb2

from pycontainerd import errdefs
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.namespaces import RequestContext
from pycontainerd.runc_shim.grpc_server import GrpcServer
from pycontainerd.runtime.v2 import bundle as bundles
from pycontainerd.runtime.v2.manager import TaskManager
from pycontainerd.runtime.v2.shim import TASK_SERVICE_V3
from pycontainerd.ttrpc.server import CallContext

T = TypeVar("T")
NS = "ns1"


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def limited() -> T:
        async with asyncio.timeout(30):
            return await coro

    return asyncio.run(limited())


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="teardown-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class FailingShim:
    """Fails every Delete; reports the task in ``status``; records Shutdown."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.shutdowns: list[shim_pb2.ShutdownRequest] = []

    def methods(self) -> dict[str, tuple[type[Any], Any]]:
        return {
            "State": (shim_pb2.StateRequest, self.state),
            "Delete": (shim_pb2.DeleteRequest, self.delete),
            "Shutdown": (shim_pb2.ShutdownRequest, self.shutdown),
        }

    async def state(self, ctx: CallContext, req: shim_pb2.StateRequest) -> shim_pb2.StateResponse:
        return shim_pb2.StateResponse(id=req.id, pid=4242, status=self.status)  # type: ignore[arg-type]

    async def delete(self, ctx: CallContext, req: shim_pb2.DeleteRequest) -> shim_pb2.DeleteResponse:
        if self.status == task_pb2.RUNNING:
            raise errdefs.FailedPrecondition("cannot delete a running process")
        raise RuntimeError("runc delete failed: exit status 1")

    async def shutdown(self, ctx: CallContext, req: shim_pb2.ShutdownRequest) -> empty_pb2.Empty:
        self.shutdowns.append(req)
        return empty_pb2.Empty()


def _prepare(base: Path, socket: Path) -> tuple[bundles.Bundle, Path]:
    """A bundle as a previous daemon run left it, with a recording ``delete`` binary."""
    calls = base / "calls"
    binary = base / "fake-shim"
    binary.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    binary.chmod(0o755)
    bundle = bundles.new_bundle(base / "state", base / "root", NS, "t1", b"{}")
    bundle.write_bootstrap(str(socket), "grpc", 3, str(binary), "io.example.fake.v1")
    return bundle, calls


async def _manager_with(base: Path, shim: FailingShim) -> tuple[TaskManager, GrpcServer]:
    server = GrpcServer()
    server.register(TASK_SERVICE_V3, shim.methods())
    await server.start(str(base / "shim.sock"))
    published: list[str] = []
    manager = TaskManager(
        base / "state",
        base / "root",
        grpc_address=str(base / "d.sock"),
        ttrpc_address=str(base / "d.sock.ttrpc"),
        publish=lambda ns, topic, event: published.append(topic),
    )
    await manager.restore()
    return manager, server


def test_failed_delete_of_a_stopped_task_tears_it_down(base: Path) -> None:
    bundle, calls = _prepare(base, base / "shim.sock")
    shim = FailingShim(task_pb2.STOPPED)

    async def main() -> None:
        manager, server = await _manager_with(base, shim)
        try:
            ctx = RequestContext(namespace=NS)
            assert [t.id for t in manager.list(ctx)] == ["t1"], "reconnected over gRPC"
            with pytest.raises(errdefs.Unknown, match="runc delete failed"):
                await manager.delete(ctx, "t1")
            assert manager.list(ctx) == []
            with pytest.raises(errdefs.NotFound):
                manager.get(ctx, "t1")
        finally:
            await manager.close()
            await server.close(grace=0)

    run(main())
    assert not bundle.path.exists() and not bundle.work.exists(), "bundle removed although Delete failed"
    assert [(s.id, s.now) for s in shim.shutdowns] == [("t1", True)], "the shim was asked to go, now"
    invocation = calls.read_text().split()
    assert invocation[-1] == "delete" and invocation[invocation.index("-bundle") + 1] == str(bundle.path)


def test_failed_delete_of_a_running_task_keeps_it(base: Path) -> None:
    bundle, calls = _prepare(base, base / "shim.sock")
    shim = FailingShim(task_pb2.RUNNING)

    async def main() -> None:
        manager, server = await _manager_with(base, shim)
        try:
            ctx = RequestContext(namespace=NS)
            with pytest.raises(errdefs.FailedPrecondition, match="running"):
                await manager.delete(ctx, "t1")
            assert manager.get(ctx, "t1").pid == 4242, "the task is still there"
        finally:
            await manager.close()
            await server.close(grace=0)

    run(main())
    assert bundle.path.exists() and (bundle.path / "bootstrap.json").exists()
    assert shim.shutdowns == [] and not calls.exists(), "nothing was torn down"
    bundle.delete()


def test_bootstrap_records_the_protocol(base: Path) -> None:
    bundle, _ = _prepare(base, base / "shim.sock")
    assert json.loads((bundle.path / "bootstrap.json").read_text()) == {
        "version": 3,
        "address": str(base / "shim.sock"),
        "protocol": "grpc",
    }
    assert bundle.read_bootstrap() == (str(base / "shim.sock"), "grpc", 3)
    assert bundles.mount_points_under(bundle.path) == []
    bundle.delete()
    assert not bundle.path.exists()


def test_mount_points_under_reads_mountinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top = tmp_path / "b 1"
    info = tmp_path / "mountinfo"
    escaped = str(top).replace(" ", "\\040")
    info.write_text(
        f"22 1 0:21 / /proc rw - proc proc rw\n"
        f"40 22 0:50 / {escaped}/rootfs rw - overlay overlay rw\n"
        f"41 40 0:51 / {escaped}/rootfs/dev rw - tmpfs tmpfs rw\n"
        f"42 22 0:52 / {escaped}2/rootfs rw - tmpfs tmpfs rw\n"
    )
    monkeypatch.setattr(bundles, "MOUNTINFO", info)
    top.mkdir()
    assert bundles.mount_points_under(top) == [f"{top}/rootfs/dev", f"{top}/rootfs"], "deepest first, no neighbours"
