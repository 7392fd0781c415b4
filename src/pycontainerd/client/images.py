"""Image records (``containerd.services.images.v1``) and reading an image's config from content."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycontainerd.api.containerd.services.images.v1 import images_pb2 as pb
from pycontainerd.api.containerd.services.images.v1 import images_pb2_grpc as pb_grpc
from pycontainerd.client._convert import image_from_pb, image_to_pb, mask
from pycontainerd.client.content import Content
from pycontainerd.errdefs import NotFound
from pycontainerd.images.manifest import ImageManifest, chain_ids, manifests

if TYPE_CHECKING:
    import builtins
    from collections.abc import Sequence

    from pycontainerd.client.connection import Connection
    from pycontainerd.core.images import Descriptor, Image
    from pycontainerd.images.platforms import Platform


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """What running an image needs: its manifest for a platform, its config and rootfs chain ID."""

    manifest: ImageManifest

    @property
    def chain_id(self) -> str:
        """The chain ID of the top layer: the snapshot a container's rootfs is prepared on."""
        ids = chain_ids(self.manifest.diff_ids)
        return ids[-1] if ids else ""

    @property
    def config(self) -> dict[str, Any]:
        """The ``config`` section of the image config (Env, Cmd, Entrypoint, WorkingDir, User...)."""
        section: dict[str, Any] = self.manifest.config.get("config") or {}
        return section


class Images:
    """The image store of the connection's namespace."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._stub = pb_grpc.ImagesStub(conn.channel())

    async def get(self, name: str) -> Image:
        """One image; NotFound when no image has that name."""
        return image_from_pb((await self._conn.call(self._stub.Get, pb.GetImageRequest(name=name))).image)

    async def list(self, filters: Sequence[str] = ()) -> list[Image]:
        """Images matching any of ``filters`` (``name==...``, ``labels.KEY==...``)."""
        reply = await self._conn.call(self._stub.List, pb.ListImagesRequest(filters=list(filters)))
        return [image_from_pb(i) for i in reply.images]

    async def create(self, image: Image) -> Image:
        """Store a new image record; AlreadyExists when the name is taken."""
        reply = await self._conn.call(self._stub.Create, pb.CreateImageRequest(image=image_to_pb(image)))
        return image_from_pb(reply.image)

    async def update(self, image: Image, fieldpaths: Sequence[str] = ()) -> Image:
        """Change a record: only ``fieldpaths`` (``labels``, ``labels.KEY``, ``target``) when given."""
        request = pb.UpdateImageRequest(image=image_to_pb(image), update_mask=mask(fieldpaths))
        return image_from_pb((await self._conn.call(self._stub.Update, request)).image)

    async def delete(self, name: str, *, sync: bool = False) -> None:
        """Remove the name; ``sync``: wait for the garbage collection of what it held."""
        await self._conn.call(self._stub.Delete, pb.DeleteImageRequest(name=name, sync=sync))

    async def config(self, name: str, platform: Platform | None = None) -> ImageConfig:
        """The manifest and config of image ``name`` for ``platform`` (default: this host)."""
        image = await self.get(name)
        blobs = await self._blobs(image.target)
        found = manifests(lambda digest: blobs[digest], image.target, platform)
        return ImageConfig(found[0])

    async def _blobs(self, target: Descriptor) -> dict[str, bytes]:
        """The JSON blobs under ``target`` the store holds (indexes, manifests, configs)."""
        content = Content(self._conn)
        blobs: dict[str, bytes] = {}
        todo: builtins.list[str] = [target.digest]
        while todo:
            digest = todo.pop()
            if digest in blobs:
                continue
            try:
                blobs[digest] = await content.read(digest)
            except NotFound:
                continue  # another platform's manifest, not fetched
            try:
                doc = json.loads(blobs[digest])
            except ValueError:
                continue
            if isinstance(doc, dict):
                todo.extend(m["digest"] for m in doc.get("manifests") or [] if "digest" in m)
                if isinstance(doc.get("config"), dict) and "digest" in doc["config"]:
                    todo.append(doc["config"]["digest"])
        return blobs
