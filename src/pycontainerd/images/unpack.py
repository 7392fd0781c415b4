"""Unpack an image's layers into a chain of committed snapshots keyed by chain ID.

Layers already unpacked (a snapshot named by their chain ID exists) are skipped. Each new
layer is applied into a fresh active snapshot on top of its parent, its diff ID checked
against the image config, then committed under its chain ID. As containerd does, the layer
blob gets a ``containerd.io/uncompressed`` label and the config blob a
``containerd.io/gc.ref.snapshot.<snapshotter>`` label pointing at the top of the chain, so the
garbage collector keeps the snapshots exactly as long as the image.

Metadata calls stay on the calling (event loop) thread; only the extraction runs in a worker
thread, so the daemon keeps answering while a layer is written.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from pycontainerd.diff.apply import apply_stream
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pycontainerd.images.manifest import chain_ids

if TYPE_CHECKING:
    from pycontainerd.core.images import Descriptor
    from pycontainerd.core.snapshots import Mount
    from pycontainerd.diff.apply import Applied
    from pycontainerd.images.manifest import ImageManifest
    from pycontainerd.metadata.content import ContentStore
    from pycontainerd.metadata.snapshots import NamespacedSnapshotter
    from pycontainerd.namespaces import RequestContext

SNAPSHOT_REF_LABEL = "containerd.io/snapshot.ref"
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"

LayerEvent = Callable[["Descriptor", str], None]
"""Told ``(layer, "extracting" | "extracted" | "exists")`` as the unpack goes."""

LayerOpener = Callable[["Descriptor"], IO[bytes]]
"""Opens a layer's (compressed) bytes for reading; called in a worker thread, may block. The
stream must offer ``peek``. A pull passes one that follows the download as it arrives."""


async def unpack(
    ctx: RequestContext,
    content: ContentStore,
    snapshotter: NamespacedSnapshotter,
    image: ImageManifest,
    on_layer: LayerEvent | None = None,
    open_layer: LayerOpener | None = None,
) -> str:
    """Unpack ``image`` into ``snapshotter``; returns the chain ID of the top layer.

    Layers are read from the content store unless ``open_layer`` is given."""
    diff_ids = image.diff_ids
    if len(diff_ids) != len(image.layers):
        raise InvalidArgument(
            f"image config lists {len(diff_ids)} diff IDs for {len(image.layers)} layers in {image.descriptor.digest}"
        )
    parent = ""
    for layer, diff_id, chain_id in zip(image.layers, diff_ids, chain_ids(diff_ids), strict=True):
        try:
            snapshotter.stat(ctx, chain_id)
        except NotFound:
            if on_layer is not None:
                on_layer(layer, "extracting")
            await _apply(ctx, content, snapshotter, layer, diff_id, chain_id, parent, open_layer)
            if on_layer is not None:
                on_layer(layer, "extracted")
        else:
            if on_layer is not None:
                on_layer(layer, "exists")
        parent = chain_id
        info = content.info(ctx, layer.digest)
        if info.labels.get(UNCOMPRESSED_LABEL) != diff_id:
            content.update(ctx, layer.digest, {UNCOMPRESSED_LABEL: diff_id}, [f"labels.{UNCOMPRESSED_LABEL}"])
    if parent:
        key = f"containerd.io/gc.ref.snapshot.{snapshotter.name}"
        content.update(ctx, image.config_descriptor.digest, {key: parent}, [f"labels.{key}"])
    return parent


async def _apply(
    ctx: RequestContext,
    content: ContentStore,
    snapshotter: NamespacedSnapshotter,
    layer: Descriptor,
    diff_id: str,
    chain_id: str,
    parent: str,
    open_layer: LayerOpener | None,
) -> None:
    if open_layer is None:
        content.info(ctx, layer.digest)  # the namespace must hold the layer
        blob_path = getattr(content.backend, "path", None)
        if blob_path is None:
            raise InvalidArgument("content backend cannot open blobs by path")

        def open_blob(desc: Descriptor) -> IO[bytes]:
            return open(blob_path(desc.digest), "rb", buffering=1 << 20)

        open_layer = open_blob

    def extract(mounts: list[Mount]) -> Applied:
        assert open_layer is not None
        with open_layer(layer) as raw:
            applied = apply_stream(raw, layer.media_type, mounts)
            # The decompressor may stop at the end of its stream before the file's end: read
            # on, so that a layer still downloading is committed (and verified) before we go on.
            while raw.read(1 << 20):
                pass
            return applied

    key = f"extract-{uuid.uuid4().hex[:12]} {chain_id}"
    mounts = snapshotter.prepare(ctx, key, parent, {SNAPSHOT_REF_LABEL: chain_id})
    try:
        applied = await asyncio.to_thread(extract, mounts)
        if applied.digest != diff_id:
            raise FailedPrecondition(f"wrong diff id calculated on extraction {applied.digest}, expected {diff_id}")
        try:
            snapshotter.commit(ctx, chain_id, key, {SNAPSHOT_REF_LABEL: chain_id})
        except AlreadyExists:
            snapshotter.remove(ctx, key)  # unpacked concurrently by someone else: theirs is as good
    except BaseException:
        try:
            snapshotter.remove(ctx, key)
        except NotFound:
            pass
        raise
