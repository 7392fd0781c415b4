"""Namespaces (``containerd.services.namespaces.v1``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2 as pb
from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2_grpc as pb_grpc
from pycontainerd.client._convert import mask

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pycontainerd.client.connection import Connection


@dataclass(frozen=True, slots=True)
class Namespace:
    """A namespace and its labels."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)


class Namespaces:
    """Every namespace of the daemon (calls ignore the connection's own namespace)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._stub = pb_grpc.NamespacesStub(conn.channel())

    async def list(self, filter: str = "") -> list[Namespace]:
        """All namespaces."""
        reply = await self._conn.call(self._stub.List, pb.ListNamespacesRequest(filter=filter))
        return [Namespace(n.name, dict(n.labels)) for n in reply.namespaces]

    async def get(self, name: str) -> Namespace:
        """One namespace; NotFound when absent."""
        reply = await self._conn.call(self._stub.Get, pb.GetNamespaceRequest(name=name))
        return Namespace(reply.namespace.name, dict(reply.namespace.labels))

    async def create(self, name: str, labels: Mapping[str, str] | None = None) -> Namespace:
        """A new namespace; AlreadyExists when taken."""
        request = pb.CreateNamespaceRequest(namespace=pb.Namespace(name=name, labels=labels or {}))
        reply = await self._conn.call(self._stub.Create, request)
        return Namespace(reply.namespace.name, dict(reply.namespace.labels))

    async def update(self, namespace: Namespace, fieldpaths: Sequence[str] = ()) -> Namespace:
        """Change labels (``labels`` or ``labels.KEY``; an empty value removes the key)."""
        request = pb.UpdateNamespaceRequest(
            namespace=pb.Namespace(name=namespace.name, labels=namespace.labels), update_mask=mask(fieldpaths)
        )
        reply = await self._conn.call(self._stub.Update, request)
        return Namespace(reply.namespace.name, dict(reply.namespace.labels))

    async def delete(self, name: str) -> None:
        """Remove an empty namespace (FailedPrecondition while it holds anything)."""
        await self._conn.call(self._stub.Delete, pb.DeleteNamespaceRequest(name=name))
