"""``containerd.services.namespaces.v1.Namespaces``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

from pycontainerd import identifiers
from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2 as pb
from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2_grpc as pb_grpc
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration

if TYPE_CHECKING:
    import grpc

    from pycontainerd.metadata.namespaces import Namespace, NamespaceStore
    from pycontainerd.metadata.plugin import Metadata


def namespace_to_pb(ns: Namespace) -> pb.Namespace:
    """Core namespace to protobuf."""
    return pb.Namespace(name=ns.name, labels=ns.labels)


class NamespacesService(pb_grpc.NamespacesServicer):
    """Namespace CRUD over the metadata store."""

    def __init__(self, store: NamespaceStore) -> None:
        self._store = store

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_NamespacesServicer_to_server(self, server)

    async def Get(self, request: pb.GetNamespaceRequest, context: Any) -> pb.GetNamespaceResponse:
        return pb.GetNamespaceResponse(namespace=namespace_to_pb(self._store.get(request.name)))

    async def List(self, request: pb.ListNamespacesRequest, context: Any) -> pb.ListNamespacesResponse:
        return pb.ListNamespacesResponse(namespaces=[namespace_to_pb(ns) for ns in self._store.list()])

    async def Create(self, request: pb.CreateNamespaceRequest, context: Any) -> pb.CreateNamespaceResponse:
        if not request.HasField("namespace"):
            raise InvalidArgument("namespace is required")
        ns = self._store.create(request.namespace.name, dict(request.namespace.labels))
        return pb.CreateNamespaceResponse(namespace=namespace_to_pb(ns))

    async def Update(self, request: pb.UpdateNamespaceRequest, context: Any) -> pb.UpdateNamespaceResponse:
        name = identifiers.validate(request.namespace.name)
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        ns = self._store.update(name, dict(request.namespace.labels), paths)
        return pb.UpdateNamespaceResponse(namespace=namespace_to_pb(ns))

    async def Delete(self, request: pb.DeleteNamespaceRequest, context: Any) -> empty_pb2.Empty:
        self._store.delete(identifiers.validate(request.name))
        return empty_pb2.Empty()


def _init(ctx: InitContext) -> NamespacesService:
    metadata: Metadata = ctx.plugins.first(types.METADATA)
    return NamespacesService(metadata.namespaces)


REGISTRATION = Registration(type=types.GRPC, id="namespaces", init=_init, requires=(types.METADATA,))
