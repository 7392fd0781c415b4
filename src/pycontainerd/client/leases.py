"""Leases (``containerd.services.leases.v1``): hold content and snapshots against garbage collection."""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import TYPE_CHECKING

from pycontainerd.api.containerd.services.leases.v1 import leases_pb2 as pb
from pycontainerd.api.containerd.services.leases.v1 import leases_pb2_grpc as pb_grpc
from pycontainerd.core.leases import EXPIRE_LABEL, Lease, Resource
from pycontainerd.errdefs import NotFound
from pycontainerd.pbtime import from_timestamp

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterator, Mapping, Sequence

    from pycontainerd.client.connection import Connection

LeaseResource = Resource
"""Something a lease holds (the core type under the name the client used first)."""


def expiry_label(seconds: float) -> dict[str, str]:
    """The label that lets the collector drop a lease ``seconds`` from now (RFC 3339, UTC)."""
    return {EXPIRE_LABEL: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))}


class Leases:
    """The leases of the connection's namespace."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._stub = pb_grpc.LeasesStub(conn.channel())

    async def create(self, lease_id: str = "", labels: Mapping[str, str] | None = None) -> Lease:
        """A new lease (a random ID when none is given)."""
        request = pb.CreateRequest(id=lease_id or f"lease-{secrets.token_hex(8)}", labels=labels or {})
        reply = await self._conn.call(self._stub.Create, request)
        return Lease(reply.lease.id, from_timestamp(reply.lease.created_at), dict(reply.lease.labels))

    async def list(self, filters: Sequence[str] = ()) -> list[Lease]:
        """Leases matching any of ``filters``."""
        reply = await self._conn.call(self._stub.List, pb.ListRequest(filters=list(filters)))
        return [Lease(m.id, from_timestamp(m.created_at), dict(m.labels)) for m in reply.leases]

    async def delete(self, lease_id: str, *, sync: bool = False) -> None:
        """Drop a lease; ``sync``: wait for the collection of what only it held."""
        await self._conn.call(self._stub.Delete, pb.DeleteRequest(id=lease_id, sync=sync))

    async def resources(self, lease_id: str) -> builtins.list[LeaseResource]:
        """What the lease holds."""
        reply = await self._conn.call(self._stub.ListResources, pb.ListResourcesRequest(id=lease_id))
        return [LeaseResource(r.id, r.type) for r in reply.resources]

    @contextlib.asynccontextmanager
    async def temporary(self, expire: float = 3600.0) -> AsyncIterator[Lease]:
        """A lease set on the connection for the block (what the block creates is held by it),
        deleted afterwards; it expires by itself after ``expire`` seconds should the deletion
        never happen. Used to create a snapshot and the record pointing at it without the
        collector stepping in between, as containerd's client does."""
        lease = await self.create(f"pyctr-{secrets.token_hex(8)}", expiry_label(expire))
        previous, self._conn.lease = self._conn.lease, lease.id
        try:
            yield lease
        finally:
            self._conn.lease = previous
            with contextlib.suppress(NotFound):
                await self.delete(lease.id)
