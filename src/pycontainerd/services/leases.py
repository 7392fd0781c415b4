"""``containerd.services.leases.v1.Leases``."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.leases.v1 import leases_pb2 as pb
from pycontainerd.api.containerd.services.leases.v1 import leases_pb2_grpc as pb_grpc
from pycontainerd.core.leases import Lease, Resource
from pycontainerd.gc.plugin import collect_now
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services._context import request_context
from pycontainerd.services._convert import timestamp

if TYPE_CHECKING:
    import grpc

    from pycontainerd.metadata.leases import LeaseStore
    from pycontainerd.metadata.plugin import Metadata


def lease_to_pb(lease: Lease) -> pb.Lease:
    """Core lease to protobuf."""
    return pb.Lease(id=lease.id, created_at=timestamp(lease.created_at), labels=lease.labels)


class LeasesService(pb_grpc.LeasesServicer):
    """Lease CRUD and resources."""

    def __init__(self, store: LeaseStore, on_sync_delete: Any = None) -> None:
        self._store = store
        self._on_sync_delete = on_sync_delete

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_LeasesServicer_to_server(self, server)

    async def Create(self, request: pb.CreateRequest, context: Any) -> pb.CreateResponse:
        ctx = request_context(context)
        # Like containerd's client, an empty ID gets a generated one.
        lease_id = request.id or f"pycontainerd-{uuid.uuid4().hex[:16]}"
        lease = self._store.create(ctx, lease_id, dict(request.labels))
        return pb.CreateResponse(lease=lease_to_pb(lease))

    async def Delete(self, request: pb.DeleteRequest, context: Any) -> empty_pb2.Empty:
        ctx = request_context(context)
        self._store.delete(ctx, request.id)
        if request.sync and self._on_sync_delete is not None:
            await self._on_sync_delete()
        return empty_pb2.Empty()

    async def List(self, request: pb.ListRequest, context: Any) -> pb.ListResponse:
        ctx = request_context(context)
        return pb.ListResponse(leases=[lease_to_pb(lease) for lease in self._store.list(ctx, list(request.filters))])

    async def AddResource(self, request: pb.AddResourceRequest, context: Any) -> empty_pb2.Empty:
        ctx = request_context(context)
        self._store.add_resource(ctx, request.id, Resource(request.resource.id, request.resource.type))
        return empty_pb2.Empty()

    async def DeleteResource(self, request: pb.DeleteResourceRequest, context: Any) -> empty_pb2.Empty:
        ctx = request_context(context)
        self._store.delete_resource(ctx, request.id, Resource(request.resource.id, request.resource.type))
        return empty_pb2.Empty()

    async def ListResources(self, request: pb.ListResourcesRequest, context: Any) -> pb.ListResourcesResponse:
        ctx = request_context(context)
        resources = self._store.list_resources(ctx, request.id)
        return pb.ListResourcesResponse(resources=[pb.Resource(id=r.id, type=r.type) for r in resources])


def _init(ctx: InitContext) -> LeasesService:
    metadata: Metadata = ctx.plugins.first(types.METADATA)
    return LeasesService(metadata.leases, collect_now(ctx))


REGISTRATION = Registration(type=types.GRPC, id="leases", init=_init, requires=(types.METADATA, types.GC))
