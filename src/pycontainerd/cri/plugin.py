"""Registration of the CRI plugin (``io.containerd.grpc.v1.cri``): builds the service, its pod
network and its streaming server, recovers pods and containers, and serves the CRI on the
daemon's gRPC socket."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pycontainerd.cri.config import CRIConfig
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration, SkipPlugin

if TYPE_CHECKING:
    import grpc

    from pycontainerd.cri.service import CRIService

log = logging.getLogger(__name__)


class CRIPlugin:
    """The plugin instance: the service plus its gRPC registration."""

    def __init__(self, svc: CRIService) -> None:
        self.svc = svc

    def register(self, server: grpc.aio.Server) -> None:
        """Serve runtime.v1 (and runtime.v1alpha2 unless disabled) on ``server``."""
        from pycontainerd.cri.servicer import register

        register(server, self.svc, v1alpha2=not self.svc.config.disable_v1alpha2)


def _optional(ctx: InitContext, plugin_type: str) -> Any:
    try:
        return ctx.plugins.first(plugin_type)
    except Exception:
        return None


async def _init(ctx: InitContext) -> CRIPlugin:
    from pycontainerd.cri.network import PodNetwork
    from pycontainerd.cri.nri import NRIBridge
    from pycontainerd.cri.service import CRIService
    from pycontainerd.cri.stream_runtime import start_streaming

    config = ctx.config if isinstance(ctx.config, CRIConfig) else CRIConfig()
    if config.disable:
        raise SkipPlugin("the CRI plugin is disabled in config.toml")
    ctx.root.mkdir(parents=True, exist_ok=True, mode=0o711)
    ctx.state.mkdir(parents=True, exist_ok=True, mode=0o711)
    svc = CRIService(
        config,
        metadata=ctx.plugins.first(types.METADATA),
        tasks=ctx.plugins.first(types.RUNTIME_V2),
        controllers=dict(ctx.plugins.get_all(types.SANDBOX_CONTROLLER)),
        transfer=_optional(ctx, types.TRANSFER),
        root=ctx.root,
        state_dir=ctx.state,
    )
    svc.network = PodNetwork(config, ctx.state)
    svc.nri = NRIBridge(svc, _optional(ctx, types.NRI))
    svc.streaming = await start_streaming(svc)
    await svc.recover()
    ctx.on_close.append(svc.close)
    await svc.nri.start()  # after recovery: plugins synchronize with the pods that survived
    ctx.exports["StreamServer"] = svc.streaming.base_url
    return CRIPlugin(svc)


REGISTRATION = Registration(
    type=types.GRPC,
    id="cri",
    init=_init,
    requires=(types.METADATA, types.RUNTIME_V2, types.SANDBOX_CONTROLLER, types.TRANSFER, types.NRI),
    config=CRIConfig,
)
