"""A snapshotter served by another process over gRPC (``[proxy_plugins]`` of type ``snapshot``).

The other end speaks ``containerd.services.snapshots.v1.Snapshots`` on a unix socket, like
containerd's remote snapshotters (stargz, nydus...) or one made with
:mod:`pycontainerd.snapshots.service`. Requests carry the proxy's name as ``snapshotter``;
gRPC errors come back as the same error kinds, so the metadata layer above treats a proxy
exactly like a built-in snapshotter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import field_mask_pb2

from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2 as pb
from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2_grpc as pb_grpc
from pycontainerd.core.snapshots import Info, Kind, Mount, Usage
from pycontainerd.pbtime import from_timestamp
from pycontainerd.services._status import from_grpc

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from pycontainerd.api.containerd.types import mount_pb2

CALL_TIMEOUT = 120.0


def mount_from_pb(m: mount_pb2.Mount) -> Mount:
    return Mount(type=m.type, source=m.source, options=tuple(m.options), target=m.target)


def info_from_pb(i: pb.Info) -> Info:
    return Info(
        name=i.name,
        kind=Kind(i.kind),
        parent=i.parent,
        labels=dict(i.labels),
        created_at=from_timestamp(i.created_at),
        updated_at=from_timestamp(i.updated_at),
    )


class ProxySnapshotter:
    """The :class:`~pycontainerd.core.snapshots.Snapshotter` protocol over a gRPC client."""

    def __init__(self, address: str, name: str) -> None:
        target = address if address.startswith("unix:") else f"unix:{address}"
        self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.SnapshotsStub(self._channel)
        self.name = name

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            raise from_grpc(exc.code(), exc.details() or "") from None

    def stat(self, key: str) -> Info:
        return info_from_pb(self._call("Stat", pb.StatSnapshotRequest(snapshotter=self.name, key=key)).info)

    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        request = pb.UpdateSnapshotRequest(
            snapshotter=self.name,
            info=pb.Info(name=info.name, kind=info.kind.name, parent=info.parent, labels=info.labels),
        )
        if fieldpaths:
            request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=list(fieldpaths)))
        return info_from_pb(self._call("Update", request).info)

    def usage(self, key: str) -> Usage:
        reply = self._call("Usage", pb.UsageRequest(snapshotter=self.name, key=key))
        return Usage(reply.size, reply.inodes)

    def mounts(self, key: str) -> list[Mount]:
        reply = self._call("Mounts", pb.MountsRequest(snapshotter=self.name, key=key))
        return [mount_from_pb(m) for m in reply.mounts]

    def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        request = pb.PrepareSnapshotRequest(snapshotter=self.name, key=key, parent=parent, labels=dict(labels or {}))
        return [mount_from_pb(m) for m in self._call("Prepare", request).mounts]

    def view(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        request = pb.ViewSnapshotRequest(snapshotter=self.name, key=key, parent=parent, labels=dict(labels or {}))
        return [mount_from_pb(m) for m in self._call("View", request).mounts]

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        request = pb.CommitSnapshotRequest(snapshotter=self.name, name=name, key=key, labels=dict(labels or {}))
        self._call("Commit", request)

    def remove(self, key: str) -> None:
        self._call("Remove", pb.RemoveSnapshotRequest(snapshotter=self.name, key=key))

    def walk(self) -> Iterator[Info]:
        try:
            replies = list(self._stub.List(pb.ListSnapshotsRequest(snapshotter=self.name), timeout=CALL_TIMEOUT))
        except grpc.RpcError as exc:
            raise from_grpc(exc.code(), exc.details() or "") from None
        for reply in replies:
            yield from (info_from_pb(i) for i in reply.info)

    def cleanup(self) -> None:
        """Ask the remote to drop what it holds for no snapshot (containerd's ``Cleanup``)."""
        self._call("Cleanup", pb.CleanupRequest(snapshotter=self.name))

    def close(self) -> None:
        self._channel.close()
