"""``containerd.services.images.v1.Images``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.images.v1 import images_pb2 as pb
from pycontainerd.api.containerd.services.images.v1 import images_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.core.images import Descriptor, Image
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.gc.plugin import collect_now
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services._context import request_context
from pycontainerd.services._convert import mask_paths, timestamp

if TYPE_CHECKING:
    import grpc

    from pycontainerd.metadata.images import ImageStore
    from pycontainerd.metadata.plugin import Metadata


def descriptor_to_pb(d: Descriptor) -> descriptor_pb2.Descriptor:
    """Core descriptor to protobuf."""
    return descriptor_pb2.Descriptor(media_type=d.media_type, digest=d.digest, size=d.size, annotations=d.annotations)


def descriptor_from_pb(d: descriptor_pb2.Descriptor) -> Descriptor:
    """Protobuf descriptor to core."""
    return Descriptor(d.media_type, d.digest, d.size, dict(d.annotations))


def image_to_pb(image: Image) -> pb.Image:
    """Core image to protobuf."""
    return pb.Image(
        name=image.name,
        labels=image.labels,
        target=descriptor_to_pb(image.target),
        created_at=timestamp(image.created_at),
        updated_at=timestamp(image.updated_at),
    )


def image_from_pb(image: pb.Image) -> Image:
    """Protobuf image to core (timestamps are the server's to set)."""
    return Image(image.name, descriptor_from_pb(image.target), dict(image.labels))


class ImagesService(pb_grpc.ImagesServicer):
    """Image records over the metadata store."""

    def __init__(self, store: ImageStore, collect_now: Any = None) -> None:
        self._store = store
        self._collect_now = collect_now

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_ImagesServicer_to_server(self, server)

    async def Get(self, request: pb.GetImageRequest, context: Any) -> pb.GetImageResponse:
        return pb.GetImageResponse(image=image_to_pb(self._store.get(request_context(context), request.name)))

    async def List(self, request: pb.ListImagesRequest, context: Any) -> pb.ListImagesResponse:
        images = self._store.list(request_context(context), list(request.filters))
        return pb.ListImagesResponse(images=[image_to_pb(i) for i in images])

    async def Create(self, request: pb.CreateImageRequest, context: Any) -> pb.CreateImageResponse:
        if not request.image.name:
            raise InvalidArgument("Image.Name required")
        created = self._store.create(request_context(context), image_from_pb(request.image))
        return pb.CreateImageResponse(image=image_to_pb(created))

    async def Update(self, request: pb.UpdateImageRequest, context: Any) -> pb.UpdateImageResponse:
        paths = mask_paths(request.HasField("update_mask"), request.update_mask)
        updated = self._store.update(request_context(context), image_from_pb(request.image), paths)
        return pb.UpdateImageResponse(image=image_to_pb(updated))

    async def Delete(self, request: pb.DeleteImageRequest, context: Any) -> empty_pb2.Empty:
        target = request.target.digest if request.HasField("target") else ""
        self._store.delete(request_context(context), request.name, target_digest=target)
        if request.sync and self._collect_now is not None:
            await self._collect_now()
        return empty_pb2.Empty()


def _init(ctx: InitContext) -> ImagesService:
    metadata: Metadata = ctx.plugins.first(types.METADATA)
    return ImagesService(metadata.images, collect_now(ctx))


REGISTRATION = Registration(type=types.GRPC, id="images", init=_init, requires=(types.METADATA, types.GC))
