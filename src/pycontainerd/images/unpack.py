"""Unpack an image's layers into a chain of committed snapshots keyed by chain ID.

Layers already unpacked (a snapshot named by their chain ID exists) are skipped. Each new
layer is applied into a fresh active snapshot on top of its parent, its diff ID checked
against the image config, then committed under its chain ID. As containerd does, the layer
blob gets a ``containerd.io/uncompressed`` label and the config blob a
``containerd.io/gc.ref.snapshot.<snapshotter>`` label pointing at the top of the chain, so the
garbage collector keeps the snapshots exactly as long as the image.

Metadata calls stay on the calling (event loop) thread; only the extraction runs in a worker
thread, so the daemon keeps answering while a layer is written.

Which differ applies a layer: the diff service's order (``differ``). When its first differ is
the in-process one (the default), layers are extracted here, streamed from ``open_layer`` (a
pull hands in one that follows the download) or from the content store. Otherwise each layer
goes to that differ's ``apply`` once it is committed (``layer_ready``): a remote differ reads it
back from the content store.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import IO, TYPE_CHECKING

from pycontainerd.content.reader import open_blob
from pycontainerd.diff.apply import apply_stream
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pycontainerd.images.manifest import chain_ids

if TYPE_CHECKING:
    from pycontainerd.core.images import Descriptor
    from pycontainerd.core.snapshots import Mount
    from pycontainerd.diff.apply import Applied
    from pycontainerd.diff.plugin import OrderedDiffers
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

LayerReady = Callable[["Descriptor"], Awaitable[None]]
"""Returns once a layer is committed to the content store (a pull passes one that waits for
the download); needed before a differ that is not in this process reads the layer."""


async def unpack(
    ctx: RequestContext,
    content: ContentStore,
    snapshotter: NamespacedSnapshotter,
    image: ImageManifest,
    on_layer: LayerEvent | None = None,
    open_layer: LayerOpener | None = None,
    *,
    differ: OrderedDiffers | None = None,
    layer_ready: LayerReady | None = None,
) -> str:
    """Unpack ``image`` into ``snapshotter``; returns the chain ID of the top layer.

    Layers are applied by ``differ`` (the diff service's order; None: in this process). In
    this process they are read from ``open_layer`` when given, else from the content store."""
    diff_ids = image.diff_ids
    # Only filesystem layers make the rootfs: others (a wasm module, application/wasm) are
    # content for the runtime, as in containerd >= 1.6.25, and the config lists no diff ID for them.
    layers = [layer for layer in image.layers if is_layer_type(layer.media_type)]
    if len(diff_ids) != len(layers):
        raise InvalidArgument(
            f"image config lists {len(diff_ids)} diff IDs for {len(layers)} layers in {image.descriptor.digest}"
        )
    parent = ""
    for layer, diff_id, chain_id in zip(layers, diff_ids, chain_ids(diff_ids), strict=True):
        try:
            snapshotter.stat(ctx, chain_id)
        except NotFound:
            if on_layer is not None:
                on_layer(layer, "extracting")
            if differ is None or differ.in_process:
                apply = _extractor(ctx, content, layer, open_layer)
            else:
                if layer_ready is not None:
                    await layer_ready(layer)
                apply = _differ_apply(ctx, differ, layer)
            await _apply(ctx, snapshotter, chain_id, parent, diff_id, apply)
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


DOCKER_LAYER_TYPES = (
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)


def is_layer_type(media_type: str) -> bool:
    """Whether a manifest layer is a filesystem layer (containerd's ``images.IsLayerType``)."""
    if media_type.startswith("application/vnd.oci.image.layer."):
        return True
    return media_type.split("+", 1)[0] in DOCKER_LAYER_TYPES


Apply = Callable[["list[Mount]"], Awaitable[str]]
"""Applies one layer onto the mounts of a fresh snapshot; returns the layer's diff ID."""


def _extractor(ctx: RequestContext, content: ContentStore, layer: Descriptor, open_layer: LayerOpener | None) -> Apply:
    """Extraction in this process, in a worker thread, streamed from ``open_layer`` or the store."""
    if open_layer is None:
        content.info(ctx, layer.digest)  # the namespace must hold the layer
        backend = content.backend

        def open_blob_of(desc: Descriptor) -> IO[bytes]:
            # The local store's file when it has one, else a streaming read from the backend.
            return open_blob(backend, desc.digest)

        open_layer = open_blob_of
    opener = open_layer

    def extract(mounts: list[Mount]) -> Applied:
        with opener(layer) as raw:
            applied = apply_stream(raw, layer.media_type, mounts)
            # The decompressor may stop at the end of its stream before the file's end: read
            # on, so that a layer still downloading is committed (and verified) before we go on.
            while raw.read(1 << 20):
                pass
            return applied

    async def apply(mounts: list[Mount]) -> str:
        extraction = asyncio.ensure_future(asyncio.to_thread(extract, mounts))
        try:
            return (await asyncio.shield(extraction)).digest
        except asyncio.CancelledError:
            # A thread cannot be stopped: let it end (its reader fails once the download is
            # cancelled) before the caller removes the snapshot it writes into.
            with contextlib.suppress(BaseException):
                await extraction
            raise

    return apply


def _differ_apply(ctx: RequestContext, differ: OrderedDiffers, layer: Descriptor) -> Apply:
    """The layer applied by the configured differs (a remote one reads it from the content store)."""

    async def apply(mounts: list[Mount]) -> str:
        return (await differ.apply(ctx, layer, mounts)).digest

    return apply


async def _apply(
    ctx: RequestContext,
    snapshotter: NamespacedSnapshotter,
    chain_id: str,
    parent: str,
    diff_id: str,
    apply: Apply,
) -> None:
    key = f"extract-{uuid.uuid4().hex[:12]} {chain_id}"
    mounts = snapshotter.prepare(ctx, key, parent, {SNAPSHOT_REF_LABEL: chain_id})
    try:
        applied = await apply(mounts)
        if applied != diff_id:
            raise FailedPrecondition(f"wrong diff id calculated on extraction {applied}, expected {diff_id}")
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
