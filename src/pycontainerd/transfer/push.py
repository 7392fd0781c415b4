"""Push: image store -> registry, children before parents, layers in parallel.

Blobs (configs and layers) go first, at most ``max_concurrent_uploaded_layers`` at a time;
each is skipped when the registry has it, mounted from another repository of the same
registry when a ``containerd.io/distribution.source.<host>`` label says where it came from,
and uploaded otherwise. Then manifests by digest, and last the root under the reference's tag.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycontainerd.content.reader import open_blob
from pycontainerd.errdefs import InvalidArgument, NotFound
from pycontainerd.images.manifest import INDEXES, MANIFESTS, index_entries, manifest_entries
from pycontainerd.images.platforms import matches
from pycontainerd.remotes.pusher import SOURCE_CHUNK, FileSource, distribution_source_key
from pycontainerd.transfer.objects import Progress, ref_key

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pycontainerd.core.images import Descriptor
    from pycontainerd.images.platforms import Platform
    from pycontainerd.namespaces import RequestContext
    from pycontainerd.remotes.pusher import BlobSource
    from pycontainerd.transfer.local import LocalTransfer
    from pycontainerd.transfer.objects import ImageStoreTarget, ProgressFn, Registry
    from pycontainerd.transfer.registry import RegistrySession


@dataclass(frozen=True, slots=True)
class BackendSource:
    """A blob of a content backend without files (a content proxy), read in a worker thread."""

    backend: Any
    digest: str
    chunk_size: int = SOURCE_CHUNK

    async def open(self, offset: int) -> AsyncIterator[bytes]:
        """The bytes from ``offset``."""
        fh = await asyncio.to_thread(open_blob, self.backend, self.digest, offset)
        try:
            while chunk := await asyncio.to_thread(fh.read, self.chunk_size):
                yield chunk
        finally:
            fh.close()


def blob_source(backend: Any, digest: str) -> BlobSource:
    """Where a push reads blob ``digest``: the local store's file, or the backend itself."""
    path = getattr(backend, "path", None)
    return FileSource(path(digest)) if callable(path) else BackendSource(backend, digest)


async def push(
    engine: LocalTransfer,
    ctx: RequestContext,
    source: ImageStoreTarget,
    target: Registry,
    progress: ProgressFn,
    session: RegistrySession,
) -> None:
    """Push the local image ``source.name`` to ``target.reference``."""
    image = engine._metadata.images.get(ctx, source.name)
    await push_image(engine, ctx, image.target, source.platforms, target, progress, session)


async def push_image(
    engine: LocalTransfer,
    ctx: RequestContext,
    root: Descriptor,
    platforms: tuple[Platform, ...],
    target: Registry,
    progress: ProgressFn,
    session: RegistrySession,
) -> None:
    """Push the image whose root is ``root`` (its manifests for ``platforms``, all when empty)."""
    content = engine._metadata.content
    assert content is not None
    backend = content.backend
    manifests_in_order: list[tuple[Descriptor, bytes]] = []  # children first
    blobs: dict[str, Descriptor] = {}

    def walk(desc: Descriptor, depth: int) -> None:
        if depth > 8:
            raise InvalidArgument("image index nesting too deep")
        data = content.read_at(ctx, desc.digest, 0, -1)
        doc = engine.read_json(ctx, desc)
        if desc.media_type in INDEXES or ("manifests" in doc and desc.media_type not in MANIFESTS):
            for child, child_desc in index_entries(doc):
                if platforms and not any(matches(p, child.get("platform")) for p in platforms):
                    continue
                try:
                    walk(child_desc, depth + 1)
                except NotFound:
                    if platforms:
                        raise
                    # Not held locally (a single-platform pull of a multi-platform image).
                    raise NotFound(
                        f"manifest {child_desc.digest} of {root.digest} is not in the content store; "
                        "pull all platforms or push with --platform"
                    ) from None
        else:
            config, layers = manifest_entries(doc, config_required=False)
            for d in [config, *layers] if config is not None else layers:
                blobs[d.digest] = d
        manifests_in_order.append((desc, data))

    walk(root, 0)
    host = session.host
    tag = session.reference.tag if not session.reference.digest else ""
    progress(Progress(f"Pushing to {target.reference}"))
    slots = asyncio.Semaphore(max(1, engine.config.max_concurrent_uploaded_layers))
    key = distribution_source_key(host)

    async def push_blob(desc: Descriptor) -> None:
        name = ref_key(desc)
        info = content.info(ctx, desc.digest)  # NotFound: the image is incomplete locally
        sources = [s for s in info.labels.get(key, "").split(",") if s]
        async with slots:
            progress(Progress("uploading", name, (), 0, desc.size, desc))
            outcome = await session.push_blob(desc, blob_source(backend, desc.digest), sources)
        event = {"exists": "already exists", "mounted": "mounted"}.get(outcome, "complete")
        progress(Progress(event, name, (), desc.size, desc.size, desc))

    await asyncio.gather(*(push_blob(d) for d in blobs.values()))
    for desc, data in manifests_in_order:
        is_root = desc.digest == root.digest
        await session.push_manifest(desc, data, tag if is_root else "")
        progress(Progress("complete", ref_key(desc), (), desc.size, desc.size, desc))
    progress(Progress(f"Completed push to {target.reference}"))
