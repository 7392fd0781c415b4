"""The shim-level Sandbox API (``containerd.runtime.sandbox.v1.Sandbox``) of our shim.

The sandbox is the shim's first container: its bundle (prepared by the daemon's ``shim``
controller: a pause process with the pod's namespaces) is created and started through the
shim's own Task service, and the pod's containers are then created in the same shim, which
is how one shim process hosts a whole pod. Every call here is a thin adapter over
:class:`~pycontainerd.runc_shim.task.TaskService`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import TYPE_CHECKING, Any

from pycontainerd import pbtime
from pycontainerd.api.containerd.runtime.sandbox.v1 import sandbox_pb2 as pb
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2 as task_pb
from pycontainerd.api.containerd.types import metrics_pb2, platform_pb2
from pycontainerd.errdefs import NotFound
from pycontainerd.images.platforms import host_platform

if TYPE_CHECKING:
    from collections.abc import Callable

    from pycontainerd.runc_shim.task import TaskService

SANDBOX_SERVICE = "containerd.runtime.sandbox.v1.Sandbox"
READY = "SANDBOX_READY"
NOT_READY = "SANDBOX_NOTREADY"
RUNNING = 2  # containerd.v1.types.Status


class SandboxService:
    """Runs the sandbox as the shim's first container."""

    def __init__(self, tasks: TaskService) -> None:
        self._tasks = tasks
        self._created: dict[str, int] = {}

    def methods(self) -> dict[str, tuple[type[Any], Callable[[Any, Any], Any]]]:
        """The ttrpc method table."""
        return {
            "CreateSandbox": (pb.CreateSandboxRequest, self.create),
            "StartSandbox": (pb.StartSandboxRequest, self.start),
            "Platform": (pb.PlatformRequest, self.platform),
            "StopSandbox": (pb.StopSandboxRequest, self.stop),
            "WaitSandbox": (pb.WaitSandboxRequest, self.wait),
            "SandboxStatus": (pb.SandboxStatusRequest, self.status),
            "PingSandbox": (pb.PingRequest, self.ping),
            "ShutdownSandbox": (pb.ShutdownSandboxRequest, self.shutdown),
            "SandboxMetrics": (pb.SandboxMetricsRequest, self.metrics),
        }

    async def create(self, ctx: Any, req: pb.CreateSandboxRequest) -> pb.CreateSandboxResponse:
        request = task_pb.CreateTaskRequest(id=req.sandbox_id, bundle=req.bundle_path, rootfs=list(req.rootfs))
        if req.HasField("options"):
            request.options.CopyFrom(req.options)
        await self._tasks.create(ctx, request)
        return pb.CreateSandboxResponse()

    async def start(self, ctx: Any, req: pb.StartSandboxRequest) -> pb.StartSandboxResponse:
        started = await self._tasks.start(ctx, task_pb.StartRequest(id=req.sandbox_id))
        created = time.time_ns()
        self._created[req.sandbox_id] = created
        return pb.StartSandboxResponse(pid=started.pid, created_at=pbtime.timestamp(created))

    async def platform(self, ctx: Any, req: pb.PlatformRequest) -> pb.PlatformResponse:
        p = host_platform()
        return pb.PlatformResponse(
            platform=platform_pb2.Platform(os=p.os, architecture=p.architecture, variant=p.variant)
        )

    async def stop(self, ctx: Any, req: pb.StopSandboxRequest) -> pb.StopSandboxResponse:
        try:
            await self._tasks.kill(ctx, task_pb.KillRequest(id=req.sandbox_id, signal=signal.SIGTERM, all=True))
            waiting = self._tasks.wait(ctx, task_pb.WaitRequest(id=req.sandbox_id))
            try:
                await asyncio.wait_for(waiting, req.timeout_secs or 10)
            except TimeoutError:
                await self._tasks.kill(ctx, task_pb.KillRequest(id=req.sandbox_id, signal=signal.SIGKILL, all=True))
                await self._tasks.wait(ctx, task_pb.WaitRequest(id=req.sandbox_id))
        except NotFound:
            pass
        return pb.StopSandboxResponse()

    async def wait(self, ctx: Any, req: pb.WaitSandboxRequest) -> pb.WaitSandboxResponse:
        ended = await self._tasks.wait(ctx, task_pb.WaitRequest(id=req.sandbox_id))
        return pb.WaitSandboxResponse(exit_status=ended.exit_status, exited_at=ended.exited_at)

    async def status(self, ctx: Any, req: pb.SandboxStatusRequest) -> pb.SandboxStatusResponse:
        state = await self._tasks.state(ctx, task_pb.StateRequest(id=req.sandbox_id))
        out = pb.SandboxStatusResponse(
            sandbox_id=req.sandbox_id, pid=state.pid, state=READY if state.status == RUNNING else NOT_READY
        )
        if req.sandbox_id in self._created:
            out.created_at.CopyFrom(pbtime.timestamp(self._created[req.sandbox_id]))
        if state.status != RUNNING and state.HasField("exited_at"):
            out.exited_at.CopyFrom(state.exited_at)
        return out

    async def ping(self, ctx: Any, req: pb.PingRequest) -> pb.PingResponse:
        await self._tasks.state(ctx, task_pb.StateRequest(id=req.sandbox_id))
        return pb.PingResponse()

    async def shutdown(self, ctx: Any, req: pb.ShutdownSandboxRequest) -> pb.ShutdownSandboxResponse:
        with contextlib.suppress(NotFound):
            await self._tasks.delete(ctx, task_pb.DeleteRequest(id=req.sandbox_id))
        self._created.pop(req.sandbox_id, None)
        return pb.ShutdownSandboxResponse()

    async def metrics(self, ctx: Any, req: pb.SandboxMetricsRequest) -> pb.SandboxMetricsResponse:
        stats = await self._tasks.stats(ctx, task_pb.StatsRequest(id=req.sandbox_id))
        metric = metrics_pb2.Metric(id=req.sandbox_id, timestamp=pbtime.now())
        if stats.HasField("stats"):
            metric.data.CopyFrom(stats.stats)
        return pb.SandboxMetricsResponse(metrics=metric)
