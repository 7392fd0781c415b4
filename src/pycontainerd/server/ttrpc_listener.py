"""The ttrpc listener at ``<grpc address>.ttrpc`` (shims publish their events there)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycontainerd.errdefs import rpc_status
from pycontainerd.plugin import types
from pycontainerd.ttrpc.server import Server

if TYPE_CHECKING:
    from pycontainerd.config.model import Config
    from pycontainerd.plugin.registration import PluginSet


async def start_ttrpc(config: Config, plugins: PluginSet) -> Server:
    """Serve every ``io.containerd.ttrpc.v1`` plugin on the ttrpc socket."""
    server = Server(error_to_status=rpc_status, require_same_user=True)
    for instance in plugins.get_all(types.TTRPC).values():
        register = getattr(instance, "register_ttrpc", None)
        if register is not None:
            register(server)
    await server.start(config.ttrpc_address)
    return server
