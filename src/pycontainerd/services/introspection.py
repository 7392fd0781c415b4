"""``containerd.services.introspection.v1.Introspection``: plugins and server identity."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

from google.rpc import status_pb2

from pycontainerd import filters
from pycontainerd.api.containerd.services.introspection.v1 import introspection_pb2 as pb
from pycontainerd.api.containerd.services.introspection.v1 import introspection_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import platform_pb2
from pycontainerd.errdefs import NotFound
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Plugin, PluginSet, Registration

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import grpc
    from google.protobuf import empty_pb2

UUID_FILE = "uuid"
STATUS_UNKNOWN = 2


def plugin_to_pb(plugin: Plugin) -> pb.Plugin:
    """A plugin (loaded, skipped or failed) as Introspection reports it."""
    reg = plugin.registration
    out = pb.Plugin(
        type=reg.type,
        id=reg.id,
        requires=list(reg.requires),
        exports=plugin.exports,
        capabilities=plugin.capabilities,
        platforms=[platform_pb2.Platform(**p) for p in plugin.platforms],
    )
    if plugin.error is not None:
        out.init_err.CopyFrom(status_pb2.Status(code=STATUS_UNKNOWN, message=str(plugin.error)))
    return out


def _adaptor(plugin: Plugin) -> filters.Adaptor:
    def field(path: Sequence[str]) -> str | None:
        head = path[0]
        if head == "type" and len(path) == 1:
            return plugin.registration.type
        if head == "id" and len(path) == 1:
            return plugin.registration.id
        if head == "exports" and len(path) > 1:
            return plugin.exports.get(".".join(path[1:]))
        return None

    return field


def _matches(plugin: Plugin, parsed: list[filters.Filter]) -> bool:
    if not parsed:
        return True
    base = _adaptor(plugin)
    # A multi-valued field (capabilities) matches when any of its values satisfies the condition.
    for candidate in plugin.capabilities or [""]:

        def field(path: Sequence[str], _c: str = candidate) -> str | None:
            if path[0] == "capabilities" and len(path) == 1:
                return _c or None
            return base(path)

        if filters.match_any(parsed, field):
            return True
    return False


def load_uuid(directory: Path) -> str:
    """The server UUID, created on first start and kept under the plugin's root."""
    path = directory / UUID_FILE
    try:
        value = path.read_text().strip()
        if value:
            return str(uuid.UUID(value))
    except (FileNotFoundError, ValueError):
        pass
    directory.mkdir(parents=True, exist_ok=True, mode=0o711)
    value = str(uuid.uuid4())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value)
    os.replace(tmp, path)
    return value


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


class IntrospectionService(pb_grpc.IntrospectionServicer):
    """Lists plugins with their status; identifies this server."""

    def __init__(self, plugins: PluginSet, server_uuid: str) -> None:
        self._plugins = plugins
        self._uuid = server_uuid

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_IntrospectionServicer_to_server(self, server)

    async def Plugins(self, request: pb.PluginsRequest, context: Any) -> pb.PluginsResponse:
        parsed = filters.parse_all(request.filters)
        return pb.PluginsResponse(plugins=[plugin_to_pb(p) for p in self._plugins if _matches(p, parsed)])

    async def Server(self, request: empty_pb2.Empty, context: Any) -> pb.ServerResponse:
        return pb.ServerResponse(uuid=self._uuid, pid=os.getpid(), pidns=_pid_namespace())

    async def PluginInfo(self, request: pb.PluginInfoRequest, context: Any) -> pb.PluginInfoResponse:
        for plugin in self._plugins:
            if plugin.registration.type == request.type and plugin.registration.id == request.id:
                return pb.PluginInfoResponse(plugin=plugin_to_pb(plugin))
        raise NotFound(f"plugin {request.type}.{request.id}: not found")


def _init(ctx: InitContext) -> IntrospectionService:
    return IntrospectionService(ctx.plugins, load_uuid(ctx.root))


REGISTRATION = Registration(type=types.GRPC, id="introspection", init=_init)
