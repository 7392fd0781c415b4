"""Serve one snapshotter over gRPC, as a proxy plugin for pycontainerd or containerd.

``python -m pycontainerd.snapshots.service --address SOCK --root DIR [--kind native|overlayfs]``
serves ``containerd.services.snapshots.v1.Snapshots`` on a unix socket for a plain
(namespace-less) snapshotter: the daemon that uses it as a ``[proxy_plugins]`` entry keeps the
namespaces, labels and GC in its own metadata, exactly as for a built-in snapshotter. The
``snapshotter`` field of requests is ignored, as containerd's remote snapshotters do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2 as pb
from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2_grpc as pb_grpc
from pycontainerd.core.snapshots import Info, Kind
from pycontainerd.services._convert import mask_paths
from pycontainerd.services._interceptor import ErrorInterceptor
from pycontainerd.services.snapshots import LIST_BATCH, info_to_pb, mount_to_pb

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pycontainerd.core.snapshots import Snapshotter


class SnapshotterService(pb_grpc.SnapshotsServicer):
    """The Snapshots API over one plain snapshotter."""

    def __init__(self, snapshotter: Snapshotter) -> None:
        self._sn = snapshotter

    async def Prepare(self, request: pb.PrepareSnapshotRequest, context: Any) -> pb.PrepareSnapshotResponse:
        mounts = self._sn.prepare(request.key, request.parent, dict(request.labels))
        return pb.PrepareSnapshotResponse(mounts=[mount_to_pb(m) for m in mounts])

    async def View(self, request: pb.ViewSnapshotRequest, context: Any) -> pb.ViewSnapshotResponse:
        mounts = self._sn.view(request.key, request.parent, dict(request.labels))
        return pb.ViewSnapshotResponse(mounts=[mount_to_pb(m) for m in mounts])

    async def Mounts(self, request: pb.MountsRequest, context: Any) -> pb.MountsResponse:
        return pb.MountsResponse(mounts=[mount_to_pb(m) for m in self._sn.mounts(request.key)])

    async def Commit(self, request: pb.CommitSnapshotRequest, context: Any) -> empty_pb2.Empty:
        self._sn.commit(request.name, request.key, dict(request.labels))
        return empty_pb2.Empty()

    async def Remove(self, request: pb.RemoveSnapshotRequest, context: Any) -> empty_pb2.Empty:
        self._sn.remove(request.key)
        return empty_pb2.Empty()

    async def Stat(self, request: pb.StatSnapshotRequest, context: Any) -> pb.StatSnapshotResponse:
        return pb.StatSnapshotResponse(info=info_to_pb(self._sn.stat(request.key)))

    async def Update(self, request: pb.UpdateSnapshotRequest, context: Any) -> pb.UpdateSnapshotResponse:
        paths = mask_paths(request.HasField("update_mask"), request.update_mask)
        wanted = Info(request.info.name, Kind(request.info.kind), request.info.parent, dict(request.info.labels))
        return pb.UpdateSnapshotResponse(info=info_to_pb(self._sn.update(wanted, paths)))

    async def List(self, request: pb.ListSnapshotsRequest, context: Any) -> AsyncIterator[pb.ListSnapshotsResponse]:
        infos = list(self._sn.walk())
        for start in range(0, len(infos), LIST_BATCH):
            yield pb.ListSnapshotsResponse(info=[info_to_pb(i) for i in infos[start : start + LIST_BATCH]])

    async def Usage(self, request: pb.UsageRequest, context: Any) -> pb.UsageResponse:
        usage = self._sn.usage(request.key)
        return pb.UsageResponse(size=usage.size, inodes=usage.inodes)

    async def Cleanup(self, request: pb.CleanupRequest, context: Any) -> empty_pb2.Empty:
        cleanup = getattr(self._sn, "cleanup", None)
        if cleanup is not None:
            cleanup()
        return empty_pb2.Empty()


async def serve(snapshotter: Snapshotter, address: str) -> None:
    """Serve ``snapshotter`` on the unix socket ``address`` until SIGTERM or SIGINT."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(address)
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    pb_grpc.add_SnapshotsServicer_to_server(SnapshotterService(snapshotter), server)
    server.add_insecure_port(f"unix:{address}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(1)
        snapshotter.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)


def main(argv: list[str] | None = None) -> int:
    """Run a snapshotter as a gRPC proxy plugin."""
    parser = argparse.ArgumentParser(prog="python -m pycontainerd.snapshots.service", description=__doc__)
    parser.add_argument("--address", required=True, help="unix socket to serve on")
    parser.add_argument("--root", required=True, help="directory for the snapshots")
    parser.add_argument("--kind", choices=["native", "overlayfs"], default="native", help="which snapshotter")
    args = parser.parse_args(argv)
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    snapshotter: Snapshotter
    if args.kind == "overlayfs":
        from pycontainerd.snapshots.overlay import OverlaySnapshotter

        snapshotter = OverlaySnapshotter(root)
    else:
        from pycontainerd.snapshots.native import NativeSnapshotter

        snapshotter = NativeSnapshotter(root)
    asyncio.run(serve(snapshotter, args.address))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
