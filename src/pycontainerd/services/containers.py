"""``containerd.services.containers.v1.Containers``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import any_pb2, empty_pb2

from pycontainerd.api.containerd.services.containers.v1 import containers_pb2 as pb
from pycontainerd.api.containerd.services.containers.v1 import containers_pb2_grpc as pb_grpc
from pycontainerd.core.containers import AnyValue, Container, Runtime
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services._context import request_context
from pycontainerd.services._convert import mask_paths, timestamp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import grpc

    from pycontainerd.metadata.containers import ContainerStore
    from pycontainerd.metadata.plugin import Metadata


def any_to_pb(value: AnyValue | None) -> any_pb2.Any | None:
    """Opaque Any to protobuf (type URL kept exactly as the client sent it)."""
    return None if value is None else any_pb2.Any(type_url=value.type_url, value=value.value)


def any_from_pb(has: bool, value: any_pb2.Any) -> AnyValue | None:
    """Protobuf Any to opaque core value."""
    return AnyValue(value.type_url, value.value) if has else None


def container_to_pb(c: Container) -> pb.Container:
    """Core container to protobuf."""
    out = pb.Container(
        id=c.id,
        labels=c.labels,
        image=c.image,
        runtime=pb.Container.Runtime(name=c.runtime.name, options=any_to_pb(c.runtime.options)),
        spec=any_to_pb(c.spec),
        snapshotter=c.snapshotter,
        snapshot_key=c.snapshot_key,
        created_at=timestamp(c.created_at),
        updated_at=timestamp(c.updated_at),
        sandbox=c.sandbox,
    )
    for key, value in c.extensions.items():
        out.extensions[key].CopyFrom(any_pb2.Any(type_url=value.type_url, value=value.value))
    return out


def container_from_pb(c: pb.Container) -> Container:
    """Protobuf container to core."""
    return Container(
        id=c.id,
        runtime=Runtime(c.runtime.name, any_from_pb(c.runtime.HasField("options"), c.runtime.options)),
        spec=any_from_pb(c.HasField("spec"), c.spec),
        image=c.image,
        snapshotter=c.snapshotter,
        snapshot_key=c.snapshot_key,
        sandbox=c.sandbox,
        labels=dict(c.labels),
        extensions={k: AnyValue(v.type_url, v.value) for k, v in c.extensions.items()},
    )


class ContainersService(pb_grpc.ContainersServicer):
    """Container records over the metadata store."""

    def __init__(self, store: ContainerStore) -> None:
        self._store = store

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_ContainersServicer_to_server(self, server)

    async def Get(self, request: pb.GetContainerRequest, context: Any) -> pb.GetContainerResponse:
        c = self._store.get(request_context(context), request.id)
        return pb.GetContainerResponse(container=container_to_pb(c))

    async def List(self, request: pb.ListContainersRequest, context: Any) -> pb.ListContainersResponse:
        found = self._store.list(request_context(context), list(request.filters))
        return pb.ListContainersResponse(containers=[container_to_pb(c) for c in found])

    async def ListStream(
        self, request: pb.ListContainersRequest, context: Any
    ) -> AsyncIterator[pb.ListContainerMessage]:
        for c in self._store.list(request_context(context), list(request.filters)):
            yield pb.ListContainerMessage(container=container_to_pb(c))

    async def Create(self, request: pb.CreateContainerRequest, context: Any) -> pb.CreateContainerResponse:
        created = self._store.create(request_context(context), container_from_pb(request.container))
        return pb.CreateContainerResponse(container=container_to_pb(created))

    async def Update(self, request: pb.UpdateContainerRequest, context: Any) -> pb.UpdateContainerResponse:
        paths = mask_paths(request.HasField("update_mask"), request.update_mask)
        updated = self._store.update(request_context(context), container_from_pb(request.container), paths)
        return pb.UpdateContainerResponse(container=container_to_pb(updated))

    async def Delete(self, request: pb.DeleteContainerRequest, context: Any) -> empty_pb2.Empty:
        self._store.delete(request_context(context), request.id)
        return empty_pb2.Empty()


def _init(ctx: InitContext) -> ContainersService:
    metadata: Metadata = ctx.plugins.first(types.METADATA)
    return ContainersService(metadata.containers)


REGISTRATION = Registration(type=types.GRPC, id="containers", init=_init, requires=(types.METADATA,))
