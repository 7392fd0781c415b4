"""``containerd.services.diff.v1.Diff``: apply layers onto snapshot mounts."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pycontainerd.api.containerd.services.diff.v1 import diff_pb2 as pb
from pycontainerd.api.containerd.services.diff.v1 import diff_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.core.content import parse_digest
from pycontainerd.core.snapshots import Mount
from pycontainerd.diff.apply import apply_layer
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument
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
        raise NotImplementedError("creating diffs is not implemented yet")


def _init(ctx: InitContext) -> DiffService:
    return DiffService(ctx.plugins.first(types.METADATA))


REGISTRATION = Registration(type=types.GRPC, id="diff", init=_init, requires=(types.METADATA,))
