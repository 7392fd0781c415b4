"""The ttrpc listener at ``<grpc address>.ttrpc`` (shims publish their events there)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pycontainerd.plugin import types

if TYPE_CHECKING:
    from pycontainerd.config.model import Config
    from pycontainerd.plugin.registration import PluginSet


async def start_ttrpc(config: Config, plugins: PluginSet) -> Any:
    """Serve every ``io.containerd.ttrpc.v1`` plugin on the ttrpc socket."""
    try:
        from pycontainerd.ttrpc.server import Server
    except ImportError:  # TODO(foundation): remove once ttrpc lands
        return None
    server = Server()
    for instance in plugins.get_all(types.TTRPC).values():
        register = getattr(instance, "register_ttrpc", None)
        if register is not None:
            register(server)
    await server.start(config.ttrpc_address)
    return server
