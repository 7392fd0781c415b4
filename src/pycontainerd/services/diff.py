"""``containerd.services.diff.v1.Diff``: apply layers onto snapshot mounts."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pycontainerd.api.containerd.services.diff.v1 import diff_pb2 as pb
from pycontainerd.api.containerd.services.diff.v1 import diff_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.core.content import parse_digest
from pycontainerd.core.snapshots import Mount
from pycontainerd.diff.apply import apply_layer
from pycontainerd.diff.layer import COMPRESSORS, MEDIA_TYPE_GZIP, UNCOMPRESSED_LABEL, make_layer
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, Unimplemented
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services._context import request_context

if TYPE_CHECKING:
    import grpc

    from pycontainerd.api.containerd.types import mount_pb2
    from pycontainerd.metadata.plugin import Metadata


def mount_from_pb(m: mount_pb2.Mount) -> Mount:
    """Protobuf mount to core."""
    return Mount(type=m.type, source=m.source, options=tuple(m.options), target=m.target)


class DiffService(pb_grpc.DiffServicer):
    """Applies layer blobs from the content store onto mounts."""

    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_DiffServicer_to_server(self, server)

    async def Apply(self, request: pb.ApplyRequest, context: Any) -> pb.ApplyResponse:
        ctx = request_context(context)
        content = self._metadata.content
        if content is None:
            raise FailedPrecondition("no content store loaded")
        digest = parse_digest(request.diff.digest)
        content.info(ctx, digest)  # the namespace must hold the blob
        path = getattr(content.backend, "path", None)
        if path is None:
            raise InvalidArgument("content backend cannot open blobs by path")
        mounts = [mount_from_pb(m) for m in request.mounts]
        # Extraction is seconds of disk work: keep it off the event loop.
        applied = await asyncio.to_thread(apply_layer, path(digest), request.diff.media_type, mounts)
        return pb.ApplyResponse(
            applied=descriptor_pb2.Descriptor(media_type=applied.media_type, digest=applied.digest, size=applied.size)
        )

    async def Diff(self, request: pb.DiffRequest, context: Any) -> pb.DiffResponse:
        ctx = request_context(context)
        content = self._metadata.content
        if content is None:
            raise FailedPrecondition("no content store loaded")
        media_type = request.media_type or MEDIA_TYPE_GZIP
        if media_type not in COMPRESSORS:
            raise Unimplemented(f"unsupported diff media type: {media_type}")
        lower = [mount_from_pb(m) for m in request.left]
        upper = [mount_from_pb(m) for m in request.right]
        with tempfile.TemporaryDirectory(prefix="pycontainerd-diff-") as tmp:
            layer = Path(tmp) / "layer"
            made = await asyncio.to_thread(make_layer, lower, upper, layer, media_type)
            labels = dict(request.labels)
            if made.compressed:
                labels[UNCOMPRESSED_LABEL] = made.uncompressed_digest
            ref = request.ref or f"diff-{uuid.uuid4().hex}"
            try:
                writer = content.writer(ctx, ref, total=made.size, expected=made.digest)
            except AlreadyExists:
                pass  # the namespace already holds this exact layer
            else:
                try:
                    await asyncio.to_thread(_copy_into, layer, writer)
                    writer.commit(made.size, made.digest, labels)
                except AlreadyExists:
                    pass
                finally:
                    writer.close()
        return pb.DiffResponse(
            diff=descriptor_pb2.Descriptor(media_type=media_type, digest=made.digest, size=made.size)
        )


def _copy_into(path: Path, writer: Any) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            writer.write(chunk)


def _init(ctx: InitContext) -> DiffService:
    return DiffService(ctx.plugins.first(types.METADATA))


REGISTRATION = Registration(type=types.GRPC, id="diff", init=_init, requires=(types.METADATA,))
