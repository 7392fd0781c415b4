"""Container records (``containerd.services.containers.v1``): metadata only; the process is a task."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycontainerd.api.containerd.services.containers.v1 import containers_pb2 as pb
from pycontainerd.api.containerd.services.containers.v1 import containers_pb2_grpc as pb_grpc
from pycontainerd.client._convert import container_from_pb, container_to_pb, mask

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pycontainerd.client.connection import Connection
    from pycontainerd.core.containers import Container


class Containers:
    """The container store of the connection's namespace."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._stub = pb_grpc.ContainersStub(conn.channel())

    async def get(self, container_id: str) -> Container:
        """One container; NotFound when there is none of that ID."""
        reply = await self._conn.call(self._stub.Get, pb.GetContainerRequest(id=container_id))
        return container_from_pb(reply.container)

    async def list(self, filters: Sequence[str] = ()) -> list[Container]:
        """Containers matching any of ``filters`` (containerd filter syntax: ``labels.app==web``)."""
        reply = await self._conn.call(self._stub.List, pb.ListContainersRequest(filters=list(filters)))
        return [container_from_pb(c) for c in reply.containers]

    async def create(self, container: Container) -> Container:
        """Store a new record; AlreadyExists when the ID is taken."""
        request = pb.CreateContainerRequest(container=container_to_pb(container))
        return container_from_pb((await self._conn.call(self._stub.Create, request)).container)

    async def update(self, container: Container, fieldpaths: Sequence[str] = ()) -> Container:
        """Change a record: only ``fieldpaths`` (``labels``, ``labels.KEY``, ``spec``...) when given."""
        request = pb.UpdateContainerRequest(container=container_to_pb(container), update_mask=mask(fieldpaths))
        return container_from_pb((await self._conn.call(self._stub.Update, request)).container)

    async def delete(self, container_id: str) -> None:
        """Remove a record (its snapshot and task are the caller's to remove)."""
        await self._conn.call(self._stub.Delete, pb.DeleteContainerRequest(id=container_id))
