"""Snapshots (``containerd.services.snapshots.v1``) of one snapshotter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2 as pb
from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2_grpc as pb_grpc
from pycontainerd.client._convert import mask, mount_from_pb, snapshot_info_from_pb, snapshot_info_to_pb
from pycontainerd.core.snapshots import Usage

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pycontainerd.client.connection import Connection
    from pycontainerd.core.snapshots import Info, Mount

DEFAULT_SNAPSHOTTER = "overlayfs"


class Snapshots:
    """One snapshotter's snapshots in the connection's namespace (containerd's Snapshotter interface)."""

    def __init__(self, conn: Connection, snapshotter: str = "") -> None:
        self._conn = conn
        self.snapshotter = snapshotter or DEFAULT_SNAPSHOTTER
        self._stub = pb_grpc.SnapshotsStub(conn.channel())

    async def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        """A new active (writable) snapshot on ``parent``; returns how to mount it."""
        request = pb.PrepareSnapshotRequest(snapshotter=self.snapshotter, key=key, parent=parent, labels=labels or {})
        return [mount_from_pb(m) for m in (await self._conn.call(self._stub.Prepare, request)).mounts]

    async def view(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        """A new read-only view of ``parent``; returns how to mount it."""
        request = pb.ViewSnapshotRequest(snapshotter=self.snapshotter, key=key, parent=parent, labels=labels or {})
        return [mount_from_pb(m) for m in (await self._conn.call(self._stub.View, request)).mounts]

    async def mounts(self, key: str) -> list[Mount]:
        """How to mount an active snapshot or a view."""
        request = pb.MountsRequest(snapshotter=self.snapshotter, key=key)
        return [mount_from_pb(m) for m in (await self._conn.call(self._stub.Mounts, request)).mounts]

    async def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Turn the active snapshot ``key`` into the committed snapshot ``name``."""
        request = pb.CommitSnapshotRequest(snapshotter=self.snapshotter, name=name, key=key, labels=labels or {})
        await self._conn.call(self._stub.Commit, request)

    async def remove(self, key: str) -> None:
        """Remove a snapshot (FailedPrecondition while it has children)."""
        await self._conn.call(self._stub.Remove, pb.RemoveSnapshotRequest(snapshotter=self.snapshotter, key=key))

    async def stat(self, key: str) -> Info:
        """One snapshot's kind, parent and labels."""
        reply = await self._conn.call(self._stub.Stat, pb.StatSnapshotRequest(snapshotter=self.snapshotter, key=key))
        return snapshot_info_from_pb(reply.info)

    async def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Change labels (``labels`` or ``labels.KEY`` in ``fieldpaths``)."""
        request = pb.UpdateSnapshotRequest(
            snapshotter=self.snapshotter, info=snapshot_info_to_pb(info), update_mask=mask(fieldpaths)
        )
        return snapshot_info_from_pb((await self._conn.call(self._stub.Update, request)).info)

    async def list(self, filters: Sequence[str] = ()) -> list[Info]:
        """Every snapshot matching any of ``filters``."""
        out: list[Info] = []
        request = pb.ListSnapshotsRequest(snapshotter=self.snapshotter, filters=list(filters))
        async for reply in self._conn.call_stream(self._stub.List, request):
            out.extend(snapshot_info_from_pb(i) for i in reply.info)
        return out

    async def usage(self, key: str) -> Usage:
        """Disk usage of the snapshot's own layer."""
        reply = await self._conn.call(self._stub.Usage, pb.UsageRequest(snapshotter=self.snapshotter, key=key))
        return Usage(size=reply.size, inodes=reply.inodes)
