"""The ``shim`` controller: the sandbox is run by its shim, through the shim's Sandbox API.

The daemon starts one shim for the sandbox and asks it over ttrpc to CreateSandbox,
StartSandbox, StopSandbox, WaitSandbox, ShutdownSandbox, and for SandboxStatus and
SandboxMetrics (``containerd.runtime.sandbox.v1.Sandbox``, which our shim implements). The pod's
containers carry the ``io.kubernetes.cri.sandbox-id`` annotation, so the shim start protocol
places them in the same shim process: one shim per pod. The sandbox's bundle is the same pause
container the ``podsandbox`` controller makes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from pycontainerd.api.containerd.runtime.sandbox.v1 import sandbox_pb2 as pb
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.errdefs import NotFound
from pycontainerd.pbtime import from_timestamp
from pycontainerd.runtime.v2.manager import SANDBOX_SERVICE
from pycontainerd.sandbox.podsandbox import Exit, PodSandboxController, Status

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from pycontainerd.namespaces import RequestContext

SANDBOXER = "shim"
DEFAULT_RUNTIME = "io.containerd.pyrunc.v2"


class ShimSandboxController(PodSandboxController):
    """Sandboxes run by the shim's own Sandbox API."""

    async def _sandbox(self, ctx: RequestContext, sandbox_id: str, method: str, request: Message, reply: type) -> Any:
        return await self._tasks.call_service(ctx, sandbox_id, SANDBOX_SERVICE, method, request, reply)

    async def start(self, ctx: RequestContext, sandbox_id: str) -> tuple[int, int]:
        await self._create_task(ctx, sandbox_id, sandbox_api=True)
        started = await self._sandbox(
            ctx, sandbox_id, "StartSandbox", pb.StartSandboxRequest(sandbox_id=sandbox_id), pb.StartSandboxResponse
        )
        created = from_timestamp(started.created_at)
        self._created[(ctx.namespace, sandbox_id)] = created
        return int(started.pid), created

    async def status(self, ctx: RequestContext, sandbox_id: str) -> Status:
        self._metadata.sandboxes.get(ctx, sandbox_id)
        try:
            st = await self._sandbox(
                ctx,
                sandbox_id,
                "SandboxStatus",
                pb.SandboxStatusRequest(sandbox_id=sandbox_id),
                pb.SandboxStatusResponse,
            )
        except NotFound:
            return Status(sandbox_id, 0, "SANDBOX_NOTREADY", self._created.get((ctx.namespace, sandbox_id), 0))
        return Status(
            sandbox_id,
            int(st.pid),
            str(st.state),
            from_timestamp(st.created_at) or self._created.get((ctx.namespace, sandbox_id), 0),
            from_timestamp(st.exited_at) if st.HasField("exited_at") else 0,
        )

    async def wait(self, ctx: RequestContext, sandbox_id: str) -> Exit:
        reply: Any = await self._tasks.call_service(
            ctx,
            sandbox_id,
            SANDBOX_SERVICE,
            "WaitSandbox",
            pb.WaitSandboxRequest(sandbox_id=sandbox_id),
            pb.WaitSandboxResponse,
            timeout=365 * 86400,
        )
        return Exit(reply.exit_status, from_timestamp(reply.exited_at))

    async def stop(self, ctx: RequestContext, sandbox_id: str, grace: float = 0) -> None:
        with contextlib.suppress(NotFound):
            await self._tasks.call_service(
                ctx,
                sandbox_id,
                SANDBOX_SERVICE,
                "StopSandbox",
                pb.StopSandboxRequest(sandbox_id=sandbox_id, timeout_secs=int(grace or 10)),
                pb.StopSandboxResponse,
                timeout=(grace or 10) + 30,
            )

    async def shutdown(self, ctx: RequestContext, sandbox_id: str) -> None:
        await self.stop(ctx, sandbox_id, grace=1)
        with contextlib.suppress(NotFound):
            await self._sandbox(
                ctx,
                sandbox_id,
                "ShutdownSandbox",
                pb.ShutdownSandboxRequest(sandbox_id=sandbox_id),
                pb.ShutdownSandboxResponse,
            )
            await self._tasks.release(ctx, sandbox_id)
        await super().shutdown(ctx, sandbox_id)

    async def metrics(self, ctx: RequestContext, sandbox_id: str) -> shim_pb2.StatsResponse:
        reply = await self._sandbox(
            ctx,
            sandbox_id,
            "SandboxMetrics",
            pb.SandboxMetricsRequest(sandbox_id=sandbox_id),
            pb.SandboxMetricsResponse,
        )
        out = shim_pb2.StatsResponse()
        if reply.HasField("metrics") and reply.metrics.HasField("data"):
            out.stats.CopyFrom(reply.metrics.data)
        return out
