"""What the daemon is: version, server identity, plugins (Version and Introspection services)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.introspection.v1 import introspection_pb2 as pb
from pycontainerd.api.containerd.services.introspection.v1 import introspection_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.services.version.v1 import version_pb2_grpc

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pycontainerd.client.connection import Connection


@dataclass(frozen=True, slots=True)
class Version:
    """The daemon's version and revision."""

    version: str
    revision: str


@dataclass(frozen=True, slots=True)
class Server:
    """The daemon's identity: a UUID kept across restarts, its PID and PID namespace."""

    uuid: str
    pid: int = 0
    pidns: int = 0
    deprecations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Plugin:
    """One plugin: ``init_error`` is why it did not load ("" when it did)."""

    type: str
    id: str
    requires: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    exports: dict[str, str] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()
    init_error: str = ""

    @property
    def status(self) -> str:
        """``ok``, or ``error`` when it failed to load (containerd calls a skipped plugin an error too)."""
        return "error" if self.init_error else "ok"


class Introspection:
    """The Version and Introspection services."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._stub = pb_grpc.IntrospectionStub(conn.channel())
        self._version = version_pb2_grpc.VersionStub(conn.channel())

    async def version(self) -> Version:
        """The daemon's version."""
        reply = await self._conn.call(self._version.Version, empty_pb2.Empty())
        return Version(reply.version, reply.revision)

    async def server(self) -> Server:
        """The daemon's UUID, PID and deprecation warnings (containerd 1.6 has no PID fields)."""
        reply = await self._conn.call(self._stub.Server, empty_pb2.Empty())
        return Server(reply.uuid, reply.pid, reply.pidns, tuple(d.message for d in reply.deprecations))

    async def plugins(self, filters: Sequence[str] = ()) -> list[Plugin]:
        """Every plugin matching any of ``filters`` (``type==io.containerd.snapshotter.v1``)."""
        reply = await self._conn.call(self._stub.Plugins, pb.PluginsRequest(filters=list(filters)))
        return [
            Plugin(
                type=p.type,
                id=p.id,
                requires=tuple(p.requires),
                platforms=tuple("/".join(x for x in (q.os, q.architecture, q.variant) if x) for q in p.platforms),
                exports=dict(p.exports),
                capabilities=tuple(p.capabilities),
                init_error=p.init_err.message if p.HasField("init_err") else "",
            )
            for p in reply.plugins
        ]
