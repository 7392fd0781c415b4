"""``containerd.services.sandbox.v1.Controller``: run sandboxes through a controller by name.

``sandboxer`` in each request picks the controller; empty means ``podsandbox``, the pause
container controller (:mod:`pycontainerd.sandbox.podsandbox`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2 as pb
from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import metrics_pb2, platform_pb2
from pycontainerd.core.containers import Runtime
from pycontainerd.errdefs import InvalidArgument, NotFound, Unimplemented
from pycontainerd.pbtime import timestamp
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.sandbox.podsandbox import SANDBOXER, PodSandboxController
from pycontainerd.sandbox.shim_controller import DEFAULT_RUNTIME as SHIM_RUNTIME
from pycontainerd.sandbox.shim_controller import SANDBOXER as SHIM_SANDBOXER
from pycontainerd.sandbox.shim_controller import ShimSandboxController
from pycontainerd.services._context import request_context
from pycontainerd.services.sandbox_store import sandbox_from_pb

if TYPE_CHECKING:
    import grpc

    from pycontainerd.metadata.plugin import Metadata
    from pycontainerd.namespaces import RequestContext

DEFAULT_RUNTIME = "io.containerd.runc.v2"


class SandboxControllerService(pb_grpc.ControllerServicer):
    """Dispatches to the controller each request names."""

    def __init__(self, metadata: Metadata, controllers: dict[str, Any]) -> None:
        self._metadata = metadata
        self._controllers = controllers

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_ControllerServicer_to_server(self, server)

    def _controller(self, name: str) -> Any:
        """PodSandboxController, ShimSandboxController or RemoteSandboxController (same methods)."""
        controller = self._controllers.get(name or SANDBOXER)
        if controller is None:
            raise Unimplemented(f"sandbox controller {name!r} is not available")
        return controller

    @staticmethod
    def _id(sandbox_id: str) -> str:
        if not sandbox_id:
            raise InvalidArgument("sandbox_id is required")
        return sandbox_id

    async def Create(self, request: pb.ControllerCreateRequest, context: Any) -> pb.ControllerCreateResponse:
        ctx = request_context(context)
        sid = self._id(request.sandbox_id)
        self._ensure_record(ctx, sid, request)
        annotations = dict(request.annotations)
        await self._controller(request.sandboxer).create(
            ctx, sid, netns_path=request.netns_path, hostname=annotations.get("io.kubernetes.cri.hostname", "")
        )
        return pb.ControllerCreateResponse(sandbox_id=sid)

    def _ensure_record(self, ctx: RequestContext, sid: str, request: pb.ControllerCreateRequest) -> None:
        try:
            self._metadata.sandboxes.get(ctx, sid)
        except NotFound:
            if not request.HasField("sandbox"):
                raise
            record = replace(sandbox_from_pb(request.sandbox), id=sid)
            if not record.runtime.name:
                record = replace(record, runtime=Runtime(DEFAULT_RUNTIME))
            self._metadata.sandboxes.create(ctx, record)

    async def Start(self, request: pb.ControllerStartRequest, context: Any) -> pb.ControllerStartResponse:
        sid = self._id(request.sandbox_id)
        pid, created = await self._controller(request.sandboxer).start(request_context(context), sid)
        return pb.ControllerStartResponse(sandbox_id=sid, pid=pid, created_at=timestamp(created))

    async def Platform(self, request: pb.ControllerPlatformRequest, context: Any) -> pb.ControllerPlatformResponse:
        p = self._controller(request.sandboxer).platform()
        return pb.ControllerPlatformResponse(
            platform=platform_pb2.Platform(os=p.os, architecture=p.architecture, variant=p.variant)
        )

    async def Stop(self, request: pb.ControllerStopRequest, context: Any) -> pb.ControllerStopResponse:
        sid = self._id(request.sandbox_id)
        await self._controller(request.sandboxer).stop(request_context(context), sid, float(request.timeout_secs))
        return pb.ControllerStopResponse()

    async def Wait(self, request: pb.ControllerWaitRequest, context: Any) -> pb.ControllerWaitResponse:
        sid = self._id(request.sandbox_id)
        ended = await self._controller(request.sandboxer).wait(request_context(context), sid)
        return pb.ControllerWaitResponse(exit_status=ended.exit_status, exited_at=timestamp(ended.exited_at))

    async def Status(self, request: pb.ControllerStatusRequest, context: Any) -> pb.ControllerStatusResponse:
        sid = self._id(request.sandbox_id)
        st = await self._controller(request.sandboxer).status(request_context(context), sid)
        out = pb.ControllerStatusResponse(sandbox_id=sid, pid=st.pid, state=st.state)
        if st.created_at:
            out.created_at.CopyFrom(timestamp(st.created_at))
        if st.exited_at:
            out.exited_at.CopyFrom(timestamp(st.exited_at))
        return out

    async def Shutdown(self, request: pb.ControllerShutdownRequest, context: Any) -> pb.ControllerShutdownResponse:
        sid = self._id(request.sandbox_id)
        await self._controller(request.sandboxer).shutdown(request_context(context), sid)
        return pb.ControllerShutdownResponse()

    async def Metrics(self, request: pb.ControllerMetricsRequest, context: Any) -> pb.ControllerMetricsResponse:
        sid = self._id(request.sandbox_id)
        stats = await self._controller(request.sandboxer).metrics(request_context(context), sid)
        metric = metrics_pb2.Metric(id=sid, timestamp=timestamp(time.time_ns()))
        if stats.HasField("stats"):
            metric.data.CopyFrom(stats.stats)
        return pb.ControllerMetricsResponse(metrics=metric)

    async def Update(self, request: pb.ControllerUpdateRequest, context: Any) -> pb.ControllerUpdateResponse:
        sid = self._id(request.sandbox_id)
        self._controller(request.sandboxer)
        record = replace(sandbox_from_pb(request.sandbox), id=sid)
        self._metadata.sandboxes.update(request_context(context), record, list(request.fields))
        return pb.ControllerUpdateResponse()


def _init_podsandbox(ctx: InitContext) -> PodSandboxController:
    return PodSandboxController(
        ctx.plugins.first(types.METADATA), ctx.plugins.first(types.RUNTIME_V2), ctx.root, DEFAULT_RUNTIME
    )


def _init_shim(ctx: InitContext) -> ShimSandboxController:
    return ShimSandboxController(
        ctx.plugins.first(types.METADATA), ctx.plugins.first(types.RUNTIME_V2), ctx.root, SHIM_RUNTIME
    )


def _init(ctx: InitContext) -> SandboxControllerService:
    controllers = dict(ctx.plugins.get_all(types.SANDBOX_CONTROLLER))
    return SandboxControllerService(ctx.plugins.first(types.METADATA), controllers)


PODSANDBOX_REGISTRATION = Registration(
    type=types.SANDBOX_CONTROLLER, id=SANDBOXER, init=_init_podsandbox, requires=(types.METADATA, types.RUNTIME_V2)
)
SHIM_REGISTRATION = Registration(
    type=types.SANDBOX_CONTROLLER, id=SHIM_SANDBOXER, init=_init_shim, requires=(types.METADATA, types.RUNTIME_V2)
)
REGISTRATION = Registration(
    type=types.GRPC,
    id="sandbox-controllers",
    init=_init,
    requires=(types.METADATA, types.SANDBOX_CONTROLLER),
)
