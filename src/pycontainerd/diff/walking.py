"""The in-process differ (containerd's "walking" differ, ``io.containerd.differ.v1.walking``).

Apply reads the layer blob from the namespace's content store (the local store's file, or any
backend through :func:`~pycontainerd.content.reader.open_blob`) and extracts it onto the mounts
in a worker thread; compare writes the diff of two mounts as a compressed layer into the
content store. Image unpack bypasses :meth:`WalkingDiffer.apply` when this differ comes first
(``in_process``) to stream a layer straight from its download; the result is the same.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pycontainerd.content.reader import open_blob
from pycontainerd.core.content import parse_digest
from pycontainerd.core.images import Descriptor
from pycontainerd.diff.apply import apply_stream
from pycontainerd.diff.layer import COMPRESSORS, MEDIA_TYPE_GZIP, UNCOMPRESSED_LABEL, make_layer
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, Unimplemented

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pycontainerd.core.snapshots import Mount
    from pycontainerd.metadata.content import ContentStore, NamespacedWriter
    from pycontainerd.metadata.plugin import Metadata
    from pycontainerd.namespaces import RequestContext

COPY_CHUNK = 1 << 20


class WalkingDiffer:
    """Applies and creates layers in this process, over the daemon's content store."""

    in_process = True

    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata

    def _content(self) -> ContentStore:
        content = self._metadata.content
        if content is None:
            raise FailedPrecondition("no content store loaded")
        return content

    async def apply(
        self,
        ctx: RequestContext,
        desc: Descriptor,
        mounts: Sequence[Mount],
        *,
        sync_fs: bool = False,
        payloads: Mapping[str, Any] | None = None,
    ) -> Descriptor:
        """Extract the blob ``desc`` onto ``mounts``; returns the uncompressed layer's descriptor."""
        content = self._content()
        digest = parse_digest(desc.digest)
        content.info(ctx, digest)  # the namespace must hold the blob
        backend = content.backend

        def run() -> Descriptor:
            with open_blob(backend, digest) as raw:
                applied = apply_stream(raw, desc.media_type, mounts)
            if sync_fs:
                os.sync()
            return Descriptor(applied.media_type, applied.digest, applied.size)

        # Extraction is seconds of disk work: keep it off the event loop.
        return await asyncio.to_thread(run)

    async def compare(
        self,
        ctx: RequestContext,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        *,
        media_type: str = "",
        ref: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """Write the diff ``lower`` -> ``upper`` into the content store as a layer of ``media_type``."""
        content = self._content()
        media_type = media_type or MEDIA_TYPE_GZIP
        if media_type not in COMPRESSORS:
            raise Unimplemented(f"unsupported diff media type: {media_type}")
        with tempfile.TemporaryDirectory(prefix="pycontainerd-diff-") as tmp:
            layer = Path(tmp) / "layer"
            made = await asyncio.to_thread(make_layer, lower, upper, layer, media_type)
            commit_labels = dict(labels or {})
            if made.compressed:
                commit_labels[UNCOMPRESSED_LABEL] = made.uncompressed_digest
            try:
                writer = content.writer(ctx, ref or f"diff-{uuid.uuid4().hex}", total=made.size, expected=made.digest)
            except AlreadyExists:
                pass  # the namespace already holds this exact layer
            else:
                try:
                    await asyncio.to_thread(copy_file_into, layer, writer)
                    writer.commit(made.size, made.digest, commit_labels)
                except AlreadyExists:
                    pass
                finally:
                    writer.close()
        return Descriptor(media_type, made.digest, made.size)


def copy_file_into(path: Path, writer: NamespacedWriter | Any) -> None:
    """Append the whole file ``path`` to a content writer (blocking)."""
    with path.open("rb") as fh:
        while chunk := fh.read(COPY_CHUNK):
            writer.write(chunk)
