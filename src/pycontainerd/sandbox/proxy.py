"""A sandbox controller served by another process (``[proxy_plugins]`` of type ``sandbox``).

It speaks ``containerd.services.sandbox.v1.Controller`` on a unix socket, each request naming
the proxy as ``sandboxer`` and carrying the caller's namespace, as containerd's remote sandbox
controller does; the sandbox records stay in this daemon's store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2 as pb
from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2_grpc as pb_grpc
from pycontainerd.namespaces import GRPC_NAMESPACE_HEADER
from pycontainerd.pbtime import from_timestamp
from pycontainerd.sandbox.podsandbox import Exit, Status
from pycontainerd.services._status import from_grpc

if TYPE_CHECKING:
    from pycontainerd.images.platforms import Platform
    from pycontainerd.metadata.plugin import Metadata
    from pycontainerd.namespaces import RequestContext

CALL_TIMEOUT = 120.0


class RemoteSandboxController:
    """The controller interface of :mod:`pycontainerd.sandbox.podsandbox`, over gRPC."""

    def __init__(self, address: str, name: str, metadata: Metadata) -> None:
        target = address if address.startswith("unix:") else f"unix:{address}"
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = pb_grpc.ControllerStub(self._channel)
        self._metadata = metadata
        self.name = name

    async def _call(self, ctx: RequestContext, method: str, request: Any, timeout: float = CALL_TIMEOUT) -> Any:  # noqa: ASYNC109
        try:
            return await getattr(self._stub, method)(
                request, metadata=((GRPC_NAMESPACE_HEADER, ctx.namespace),), timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise from_grpc(exc.code(), exc.details() or "") from None

    async def create(
        self,
        ctx: RequestContext,
        sandbox_id: str,
        *,
        netns_path: str = "",
        hostname: str = "",
        pid_namespace: bool = True,
    ) -> None:
        from pycontainerd.services.sandbox_store import sandbox_to_pb

        record = sandbox_to_pb(self._metadata.sandboxes.get(ctx, sandbox_id))
        annotations = {"io.kubernetes.cri.hostname": hostname} if hostname else {}
        await self._call(
            ctx,
            "Create",
            pb.ControllerCreateRequest(
                sandbox_id=sandbox_id,
                sandboxer=self.name,
                netns_path=netns_path,
                annotations=annotations,
                sandbox=record,
            ),
        )

    async def start(self, ctx: RequestContext, sandbox_id: str) -> tuple[int, int]:
        reply = await self._call(ctx, "Start", pb.ControllerStartRequest(sandbox_id=sandbox_id, sandboxer=self.name))
        return int(reply.pid), from_timestamp(reply.created_at)

    async def status(self, ctx: RequestContext, sandbox_id: str) -> Status:
        st = await self._call(ctx, "Status", pb.ControllerStatusRequest(sandbox_id=sandbox_id, sandboxer=self.name))
        exited = from_timestamp(st.exited_at) if st.HasField("exited_at") else 0
        return Status(sandbox_id, int(st.pid), str(st.state), from_timestamp(st.created_at), exited)

    async def wait(self, ctx: RequestContext, sandbox_id: str) -> Exit:
        reply = await self._call(
            ctx, "Wait", pb.ControllerWaitRequest(sandbox_id=sandbox_id, sandboxer=self.name), timeout=365 * 86400
        )
        return Exit(int(reply.exit_status), from_timestamp(reply.exited_at))

    async def stop(self, ctx: RequestContext, sandbox_id: str, grace: float = 0) -> None:
        request = pb.ControllerStopRequest(sandbox_id=sandbox_id, sandboxer=self.name, timeout_secs=int(grace))
        await self._call(ctx, "Stop", request, timeout=CALL_TIMEOUT + grace)

    async def shutdown(self, ctx: RequestContext, sandbox_id: str) -> None:
        await self._call(ctx, "Shutdown", pb.ControllerShutdownRequest(sandbox_id=sandbox_id, sandboxer=self.name))

    def platform(self) -> Platform:
        from pycontainerd.images.platforms import host_platform

        return host_platform()

    async def metrics(self, ctx: RequestContext, sandbox_id: str) -> shim_pb2.StatsResponse:
        reply = await self._call(
            ctx, "Metrics", pb.ControllerMetricsRequest(sandbox_id=sandbox_id, sandboxer=self.name)
        )
        out = shim_pb2.StatsResponse()
        if reply.HasField("metrics") and reply.metrics.HasField("data"):
            out.stats.CopyFrom(reply.metrics.data)
        return out

    async def close(self) -> None:
        await self._channel.close()
