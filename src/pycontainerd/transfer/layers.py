"""Layer streams to and from snapshots: the two transfer pairs containerd does not implement.

* ``ReadStream`` -> ``Snapshot``: the client streams a layer (tar, gzip or zstd); it is
  applied on top of ``parent`` in a fresh active snapshot and committed as ``key``. Nothing
  is left behind if the stream breaks or the layer is bad.
* ``Snapshot`` -> ``WriteStream``: the diff between ``parent`` (by default the snapshot's own
  parent) and ``key`` is written to the client as a layer of the requested media type.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from pycontainerd.core.images import Descriptor
from pycontainerd.core.snapshots import Kind
from pycontainerd.diff.apply import apply_stream
from pycontainerd.diff.layer import COMPRESSORS, MEDIA_TYPE_GZIP, make_layer
from pycontainerd.errdefs import InvalidArgument, NotFound
from pycontainerd.transfer.bytestream import BlockingReader, ByteReader, ByteWriter, LoopBridge
from pycontainerd.transfer.objects import Progress

if TYPE_CHECKING:
    from pycontainerd.core.snapshots import Mount
    from pycontainerd.metadata.snapshots import NamespacedSnapshotter
    from pycontainerd.namespaces import RequestContext
    from pycontainerd.transfer.local import LocalTransfer
    from pycontainerd.transfer.objects import ProgressFn, ReadStream, SnapshotTarget, WriteStream

READ_BUFFER = 1 << 20


def _snapshotter(engine: LocalTransfer, name: str) -> NamespacedSnapshotter:
    wanted = name or engine.config.default_snapshotter
    found = engine.snapshotters.get(wanted)
    if found is None:
        raise NotFound(f"snapshotter {wanted!r} not loaded")
    return found


async def layer_to_snapshot(
    engine: LocalTransfer, ctx: RequestContext, source: ReadStream, target: SnapshotTarget, progress: ProgressFn
) -> None:
    """Apply the layer the client streams and commit it as ``target.key``."""
    if not target.key:
        raise InvalidArgument("snapshot key required")
    snapshotter = _snapshotter(engine, target.snapshotter)
    work_key = f"transfer-extract-{uuid.uuid4().hex[:12]} {target.key}"
    mounts = snapshotter.prepare(ctx, work_key, target.parent)
    try:
        progress(Progress("extracting", target.key))
        raw = io.BufferedReader(BlockingReader(LoopBridge(asyncio.get_running_loop()), ByteReader(source.stream)))
        applied = await asyncio.to_thread(apply_stream, raw, source.media_type, mounts)
        snapshotter.commit(ctx, target.key, work_key, target.labels)
    except BaseException:
        with contextlib.suppress(NotFound):
            snapshotter.remove(ctx, work_key)
        raise
    finally:
        source.stream.close()
    desc = Descriptor(applied.media_type, applied.digest, applied.size)
    progress(Progress("extracted", target.key, (), applied.size, applied.size, desc))


async def snapshot_to_layer(
    engine: LocalTransfer, ctx: RequestContext, source: SnapshotTarget, target: WriteStream, progress: ProgressFn
) -> None:
    """Write the diff of ``source.key`` against its parent to the client as a layer."""
    media_type = target.media_type or MEDIA_TYPE_GZIP
    if media_type not in COMPRESSORS:
        raise InvalidArgument(f"unsupported layer media type {media_type!r}")
    snapshotter = _snapshotter(engine, source.snapshotter)
    info = snapshotter.stat(ctx, source.key)
    parent = source.parent or info.parent
    views: list[str] = []

    def view_of(name: str) -> list[Mount]:
        key = f"transfer-view-{uuid.uuid4().hex[:12]}"
        views.append(key)
        return snapshotter.view(ctx, key, name)

    writer = ByteWriter(target.stream)
    try:
        lower: list[Mount] = view_of(parent) if parent else []
        upper = view_of(source.key) if info.kind == Kind.COMMITTED else snapshotter.mounts(ctx, source.key)
        progress(Progress("diffing", source.key))
        with tempfile.TemporaryDirectory(prefix="pycontainerd-layer-") as tmp:
            path = Path(tmp) / "layer"
            made = await asyncio.to_thread(make_layer, lower, upper, path, media_type)
            with path.open("rb") as fh:
                while chunk := await asyncio.to_thread(fh.read, READ_BUFFER):
                    await writer.write(chunk)
    finally:
        await writer.aclose()
        for key in views:
            with contextlib.suppress(NotFound):
                snapshotter.remove(ctx, key)
    desc = Descriptor(media_type, made.digest, made.size, {"containerd.io/uncompressed": made.uncompressed_digest})
    progress(Progress("diffed", source.key, (), made.size, made.size, desc))
