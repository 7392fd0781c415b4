"""``containerd.services.version.v1.Version``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pycontainerd import version as pkgversion
from pycontainerd.api.containerd.services.version.v1 import version_pb2, version_pb2_grpc
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import Registration

if TYPE_CHECKING:
    import grpc
    from google.protobuf import empty_pb2


class VersionService(version_pb2_grpc.VersionServicer):
    """Reports the server version as a semver string clients can parse."""

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        version_pb2_grpc.add_VersionServicer_to_server(self, server)

    async def Version(self, request: empty_pb2.Empty, context: Any) -> version_pb2.VersionResponse:
        return version_pb2.VersionResponse(version=pkgversion.VERSION, revision=pkgversion.revision())


REGISTRATION = Registration(type=types.GRPC, id="version", init=lambda _ctx: VersionService())
