"""``containerd.services.sandbox.v1.Store``: sandbox records over the metadata store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import any_pb2

from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2 as pb
from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import sandbox_pb2 as types_pb
from pycontainerd.core.containers import Runtime
from pycontainerd.core.sandboxes import Sandbox
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services._context import request_context
from pycontainerd.services._convert import timestamp
from pycontainerd.services.containers import any_from_pb, any_to_pb

if TYPE_CHECKING:
    import grpc

    from pycontainerd.metadata.plugin import Metadata
    from pycontainerd.metadata.sandboxes import SandboxStore


def sandbox_to_pb(s: Sandbox) -> types_pb.Sandbox:
    """Core sandbox to protobuf."""
    out = types_pb.Sandbox(
        sandbox_id=s.id,
        runtime=types_pb.Sandbox.Runtime(name=s.runtime.name, options=any_to_pb(s.runtime.options)),
        spec=any_to_pb(s.spec),
        labels=s.labels,
        created_at=timestamp(s.created_at),
        updated_at=timestamp(s.updated_at),
        sandboxer=s.sandboxer,
    )
    for key, value in s.extensions.items():
        out.extensions[key].CopyFrom(any_pb2.Any(type_url=value.type_url, value=value.value))
    return out


def sandbox_from_pb(s: types_pb.Sandbox) -> Sandbox:
    """Protobuf sandbox to core (timestamps are the server's to set)."""
    return Sandbox(
        id=s.sandbox_id,
        runtime=Runtime(s.runtime.name, any_from_pb(s.runtime.HasField("options"), s.runtime.options)),
        spec=any_from_pb(s.HasField("spec"), s.spec),
        sandboxer=s.sandboxer,
        labels=dict(s.labels),
        extensions={k: v for k, e in s.extensions.items() if (v := any_from_pb(True, e)) is not None},
    )


class SandboxStoreService(pb_grpc.StoreServicer):
    """Create, read, update and delete sandbox records."""

    def __init__(self, store: SandboxStore) -> None:
        self._store = store

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_StoreServicer_to_server(self, server)

    async def Create(self, request: pb.StoreCreateRequest, context: Any) -> pb.StoreCreateResponse:
        created = self._store.create(request_context(context), sandbox_from_pb(request.sandbox))
        return pb.StoreCreateResponse(sandbox=sandbox_to_pb(created))

    async def Update(self, request: pb.StoreUpdateRequest, context: Any) -> pb.StoreUpdateResponse:
        if not request.sandbox.sandbox_id:
            raise InvalidArgument("sandbox ID required")
        updated = self._store.update(request_context(context), sandbox_from_pb(request.sandbox), list(request.fields))
        return pb.StoreUpdateResponse(sandbox=sandbox_to_pb(updated))

    async def Delete(self, request: pb.StoreDeleteRequest, context: Any) -> pb.StoreDeleteResponse:
        self._store.delete(request_context(context), request.sandbox_id)
        return pb.StoreDeleteResponse()

    async def List(self, request: pb.StoreListRequest, context: Any) -> pb.StoreListResponse:
        found = self._store.list(request_context(context), list(request.filters))
        return pb.StoreListResponse(list=[sandbox_to_pb(s) for s in found])

    async def Get(self, request: pb.StoreGetRequest, context: Any) -> pb.StoreGetResponse:
        return pb.StoreGetResponse(sandbox=sandbox_to_pb(self._store.get(request_context(context), request.sandbox_id)))


def _init(ctx: InitContext) -> SandboxStoreService:
    metadata: Metadata = ctx.plugins.first(types.METADATA)
    return SandboxStoreService(metadata.sandboxes)


REGISTRATION = Registration(type=types.GRPC, id="sandboxes", init=_init, requires=(types.METADATA,))
