"""``containerd.services.snapshots.v1.Snapshots``: every loaded snapshotter, by name.

Mounts leave this API without ``uidmap=``/``gidmap=`` options: clients of containerd 1.6 mount
snapshots themselves (``ctr run`` reads the rootfs's /etc/group) and their mount code passes
unknown options to the kernel, which refuses them. The ID mapping is applied where the rootfs
is mounted for the container: :func:`task_rootfs` gives it back to the mounts of a new task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2 as pb
from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import mount_pb2
from pycontainerd.core.snapshots import Info, Kind, Mount
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument, NotFound
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services._context import request_context
from pycontainerd.services._convert import mask_paths, timestamp
from pycontainerd.snapshots.mount import split_idmap_options

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    import grpc

    from pycontainerd.core.containers import Container
    from pycontainerd.metadata.plugin import Metadata
    from pycontainerd.metadata.snapshots import NamespacedSnapshotter
    from pycontainerd.namespaces import RequestContext

LIST_BATCH = 100


def mount_to_pb(m: Mount) -> mount_pb2.Mount:
    """Core mount to protobuf."""
    return mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))


def client_mounts(mounts: Sequence[Mount]) -> list[mount_pb2.Mount]:
    """Mounts as this API hands them out: without the ID-mapping options (see the module doc)."""
    return [mount_to_pb(Mount(m.type, m.source, split_idmap_options(m.options)[2], m.target)) for m in mounts]


def task_rootfs(
    metadata: Metadata, ctx: RequestContext, container: Container, rootfs: list[mount_pb2.Mount]
) -> list[mount_pb2.Mount]:
    """The rootfs mounts a new task gets: ``rootfs`` as the client sent it, unless it is the
    container's snapshot as this API showed it, which then gets its ID-mapping options back."""
    snapshotter = metadata.snapshotters.get(container.snapshotter) if container.snapshot_key else None
    if snapshotter is None or not rootfs:
        return rootfs
    try:
        own = snapshotter.mounts(ctx, container.snapshot_key)
    except (NotFound, FailedPrecondition):
        return rootfs
    if all(split_idmap_options(m.options)[2] == tuple(m.options) for m in own):
        return rootfs
    return [mount_to_pb(m) for m in own] if client_mounts(own) == rootfs else rootfs


def info_to_pb(info: Info) -> pb.Info:
    """Core snapshot info to protobuf."""
    return pb.Info(
        name=info.name,
        parent=info.parent,
        kind=info.kind.name,
        created_at=timestamp(info.created_at),
        updated_at=timestamp(info.updated_at),
        labels=info.labels,
    )


def kind_from_pb(kind: int) -> Kind:
    """A wire kind as containerd reads it: ACTIVE and VIEW as such, anything else COMMITTED
    (an out-of-range enum value from a client is not an error)."""
    return Kind(kind) if kind in (Kind.ACTIVE, Kind.VIEW) else Kind.COMMITTED


class SnapshotsService(pb_grpc.SnapshotsServicer):
    """The Snapshots API over the namespaced snapshotters."""

    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_SnapshotsServicer_to_server(self, server)

    def _get(self, name: str) -> NamespacedSnapshotter:
        snapshotter = self._metadata.snapshotters.get(name)
        if snapshotter is None:
            raise InvalidArgument(f"snapshotter not loaded: {name}")
        return snapshotter

    async def Prepare(self, request: pb.PrepareSnapshotRequest, context: Any) -> pb.PrepareSnapshotResponse:
        ss = self._get(request.snapshotter)
        mounts = ss.prepare(request_context(context), request.key, request.parent, dict(request.labels))
        return pb.PrepareSnapshotResponse(mounts=client_mounts(mounts))

    async def View(self, request: pb.ViewSnapshotRequest, context: Any) -> pb.ViewSnapshotResponse:
        ss = self._get(request.snapshotter)
        mounts = ss.view(request_context(context), request.key, request.parent, dict(request.labels))
        return pb.ViewSnapshotResponse(mounts=client_mounts(mounts))

    async def Mounts(self, request: pb.MountsRequest, context: Any) -> pb.MountsResponse:
        mounts = self._get(request.snapshotter).mounts(request_context(context), request.key)
        return pb.MountsResponse(mounts=client_mounts(mounts))

    async def Commit(self, request: pb.CommitSnapshotRequest, context: Any) -> empty_pb2.Empty:
        self._get(request.snapshotter).commit(request_context(context), request.name, request.key, dict(request.labels))
        return empty_pb2.Empty()

    async def Remove(self, request: pb.RemoveSnapshotRequest, context: Any) -> empty_pb2.Empty:
        self._get(request.snapshotter).remove(request_context(context), request.key)
        return empty_pb2.Empty()

    async def Stat(self, request: pb.StatSnapshotRequest, context: Any) -> pb.StatSnapshotResponse:
        info = self._get(request.snapshotter).stat(request_context(context), request.key)
        return pb.StatSnapshotResponse(info=info_to_pb(info))

    async def Update(self, request: pb.UpdateSnapshotRequest, context: Any) -> pb.UpdateSnapshotResponse:
        paths = mask_paths(request.HasField("update_mask"), request.update_mask)
        info_pb = request.info
        wanted = Info(info_pb.name, kind_from_pb(info_pb.kind), info_pb.parent, dict(info_pb.labels))
        info = self._get(request.snapshotter).update(request_context(context), wanted, paths)
        return pb.UpdateSnapshotResponse(info=info_to_pb(info))

    async def List(self, request: pb.ListSnapshotsRequest, context: Any) -> AsyncIterator[pb.ListSnapshotsResponse]:
        infos = self._get(request.snapshotter).list(request_context(context), list(request.filters))
        for start in range(0, len(infos), LIST_BATCH):
            yield pb.ListSnapshotsResponse(info=[info_to_pb(i) for i in infos[start : start + LIST_BATCH]])

    async def Usage(self, request: pb.UsageRequest, context: Any) -> pb.UsageResponse:
        usage = self._get(request.snapshotter).usage(request_context(context), request.key)
        return pb.UsageResponse(size=usage.size, inodes=usage.inodes)

    async def Cleanup(self, request: pb.CleanupRequest, context: Any) -> empty_pb2.Empty:
        self._get(request.snapshotter).sweep_backend()
        return empty_pb2.Empty()


def _init(ctx: InitContext) -> SnapshotsService:
    return SnapshotsService(ctx.plugins.first(types.METADATA))


REGISTRATION = Registration(type=types.GRPC, id="snapshots", init=_init, requires=(types.METADATA,))
