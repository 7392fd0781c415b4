"""``containerd.services.diff.v1.Diff``: apply and create layers through the configured differs.

A thin edge over ``io.containerd.service.v1.diff-service`` (:class:`~pycontainerd.diff.plugin.OrderedDiffers`):
the differs of its ``default`` list are tried in order, the built-in in-process ``walking``
differ by default, a ``[proxy_plugins]`` differ when it is named first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pycontainerd.api.containerd.services.diff.v1 import diff_pb2 as pb
from pycontainerd.api.containerd.services.diff.v1 import diff_pb2_grpc as pb_grpc
from pycontainerd.core.content import parse_digest
from pycontainerd.core.images import Descriptor
from pycontainerd.core.snapshots import Mount
from pycontainerd.diff.plugin import DIFF_SERVICE_ID
from pycontainerd.diff.proxy import descriptor_to_pb
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services._context import request_context

if TYPE_CHECKING:
    import grpc

    from pycontainerd.api.containerd.types import mount_pb2
    from pycontainerd.diff.plugin import OrderedDiffers


def mount_from_pb(m: mount_pb2.Mount) -> Mount:
    """Protobuf mount to core."""
    return Mount(type=m.type, source=m.source, options=tuple(m.options), target=m.target)


class DiffService(pb_grpc.DiffServicer):
    """Applies layer blobs of the content store onto mounts, and creates layers, with the ordered differs."""

    def __init__(self, differs: OrderedDiffers) -> None:
        self._differs = differs

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_DiffServicer_to_server(self, server)

    async def Apply(self, request: pb.ApplyRequest, context: Any) -> pb.ApplyResponse:
        ctx = request_context(context)
        if not request.HasField("diff"):
            raise InvalidArgument("diff descriptor required")
        d = request.diff
        desc = Descriptor(d.media_type, parse_digest(d.digest), d.size, dict(d.annotations))
        applied = await self._differs.apply(
            ctx,
            desc,
            [mount_from_pb(m) for m in request.mounts],
            sync_fs=request.sync_fs,
            payloads=dict(request.payloads),
        )
        return pb.ApplyResponse(applied=descriptor_to_pb(applied))

    async def Diff(self, request: pb.DiffRequest, context: Any) -> pb.DiffResponse:
        ctx = request_context(context)
        made = await self._differs.compare(
            ctx,
            [mount_from_pb(m) for m in request.left],
            [mount_from_pb(m) for m in request.right],
            media_type=request.media_type,
            ref=request.ref,
            labels=dict(request.labels),
        )
        return pb.DiffResponse(diff=descriptor_to_pb(made))


def _init(ctx: InitContext) -> DiffService:
    return DiffService(ctx.plugins.get(types.SERVICE, DIFF_SERVICE_ID))


REGISTRATION = Registration(type=types.GRPC, id="diff", init=_init, requires=(types.SERVICE,))
