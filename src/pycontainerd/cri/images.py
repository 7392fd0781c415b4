"""ImageService: ListImages, ImageStatus, PullImage, RemoveImage, ImageFsInfo.

CRI images are the image records of the ``k8s.io`` namespace, grouped by what kubelet calls
the image ID: the digest of the image config for this host's platform. An image is found by
any of its names (``busybox`` is ``docker.io/library/busybox:latest``), by a repo digest, or by
its ID (full, or a unique prefix with or without ``sha256:``). Pulls go through the Transfer
service's registry-to-image-store transfer, unpacking into the snapshotter of the runtime
handler the image is pulled for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.errdefs import InvalidArgument, NotFound
from pycontainerd.images.manifest import chain_ids, manifests
from pycontainerd.images.platforms import host_platform
from pycontainerd.remotes.credentials import Credentials
from pycontainerd.remotes.reference import parse_reference
from pycontainerd.transfer.objects import ImageStoreTarget, Registry, Unpack

if TYPE_CHECKING:
    from pycontainerd.core.images import Image
    from pycontainerd.cri.service import CRIService

log = logging.getLogger(__name__)

PINNED_LABEL = "io.cri-containerd.pinned"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the CRI needs of one image record, for the host platform."""

    id: str
    name: str
    target: str
    size: int
    chain_id: str
    config: dict[str, Any]
    pinned: bool


def _info(svc: CRIService, image: Image, cache: dict[str, Any]) -> ImageInfo | None:
    content = svc.metadata.content
    if content is None:
        return None
    key = image.target.digest
    if key not in cache:

        def read(digest: str) -> bytes:
            return content.read_at(svc.ctx, digest, 0, -1)

        try:
            found = manifests(read, image.target, host_platform())[0]
        except Exception:
            cache[key] = None
        else:
            layers = sum(layer.size for layer in found.layers)
            chain = chain_ids(found.diff_ids)
            cache[key] = (
                found.config_descriptor.digest,
                layers + found.config_descriptor.size + found.descriptor.size,
                chain[-1] if chain else "",
                found.config,
            )
    entry = cache[key]
    if entry is None:
        return None
    config_digest, size, chain, config = entry
    pinned = image.labels.get(PINNED_LABEL) == "pinned"
    return ImageInfo(config_digest, image.name, key, size, chain, config, pinned)


class ImageIndex:
    """Image records of ``k8s.io`` seen through the CRI's eyes (cached by manifest digest)."""

    def __init__(self, svc: CRIService) -> None:
        self._svc = svc
        self._cache: dict[str, Any] = {}

    def all(self) -> list[ImageInfo]:
        """Every record that resolves for this platform."""
        out = []
        for image in self._svc.metadata.images.list(self._svc.ctx):
            info = _info(self._svc, image, self._cache)
            if info is not None:
                out.append(info)
        return out

    def lookup(self, ref: str) -> list[ImageInfo]:
        """The records of the image ``ref`` names (by name, repo digest or ID); [] if none."""
        if not ref:
            raise InvalidArgument("image reference must not be empty")
        infos = self.all()
        bare = ref.removeprefix("sha256:")
        if len(bare) >= 3 and all(c in "0123456789abcdef" for c in bare) and "/" not in ref and ":" not in bare:
            ids = {i.id for i in infos if i.id.removeprefix("sha256:").startswith(bare)}
            if len(ids) == 1:
                return [i for i in infos if i.id in ids]
            if ref.startswith("sha256:") or len(bare) == 64:
                return []
        try:
            normalized = parse_reference(ref)
        except InvalidArgument:
            return []
        if normalized.digest:
            wanted = {i.id for i in infos if i.name.split("@")[0].split(":")[0] == normalized.name}
            by_digest = [
                i for i in infos if i.id in wanted and (i.target == normalized.digest or i.name == str(normalized))
            ]
            ids = {i.id for i in by_digest}
        else:
            ids = {i.id for i in infos if i.name == str(normalized)}
        return [i for i in infos if i.id in ids]

    def get(self, ref: str) -> ImageInfo:
        """The image ``ref`` names; NotFound otherwise."""
        found = self.lookup(ref)
        if not found:
            raise NotFound(f"image {ref!r} not found")
        return found[0]


def to_cri(infos: list[ImageInfo]) -> api.Image:
    """One CRI image from all the records of one image ID."""
    first = infos[0]
    tags, digests = [], []
    for info in infos:
        if info.name.startswith("sha256:"):
            continue
        try:
            ref = parse_reference(info.name)
        except InvalidArgument:
            continue
        if ref.tag and not ref.digest:
            tags.append(str(ref))
        digests.append(f"{ref.name}@{info.target}")
    image = api.Image(
        id=first.id,
        repo_tags=sorted(set(tags)),
        repo_digests=sorted(set(digests)),
        size=first.size,
        pinned=any(i.pinned for i in infos),
    )
    image.spec.image = first.id
    user = (first.config.get("config") or {}).get("User", "")
    name = user.split(":", 1)[0]
    if name.isdigit():
        image.uid.value = int(name)
    elif name:
        image.username = name
    return image


def _grouped(infos: list[ImageInfo]) -> dict[str, list[ImageInfo]]:
    groups: dict[str, list[ImageInfo]] = {}
    for info in infos:
        groups.setdefault(info.id, []).append(info)
    return groups


async def list_images(svc: CRIService, request: api.ListImagesRequest) -> api.ListImagesResponse:
    """Every image (filtered by ``filter.image.image`` when set)."""
    index = ImageIndex(svc)
    infos = index.lookup(request.filter.image.image) if request.filter.image.image else index.all()
    return api.ListImagesResponse(images=[to_cri(g) for g in _grouped(infos).values()])


async def image_status(svc: CRIService, request: api.ImageStatusRequest) -> api.ImageStatusResponse:
    """The image, or an empty response when it is not present (kubelet's "not found")."""
    infos = ImageIndex(svc).lookup(request.image.image)
    if not infos:
        return api.ImageStatusResponse()
    infos = _grouped(ImageIndex(svc).all())[infos[0].id]
    response = api.ImageStatusResponse(image=to_cri(infos))
    if request.verbose:
        import json

        response.info["info"] = json.dumps({"chainID": infos[0].chain_id, "imageSpec": infos[0].config})
    return response


def _credentials(auth: api.AuthConfig) -> Credentials | None:
    import base64

    username, password = auth.username, auth.password
    if auth.auth and not username:
        try:
            username, _, password = base64.b64decode(auth.auth).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument("auth: not base64 of user:password") from None
    if auth.registry_token:
        return Credentials(identity_token=auth.registry_token)
    creds = Credentials(username=username, password=password, identity_token=auth.identity_token)
    return None if creds.empty else creds


async def pull_image(svc: CRIService, request: api.PullImageRequest) -> api.PullImageResponse:
    """Pull through the Transfer service; the response names the image ID."""
    if svc.transfer is None:
        raise NotFound("no transfer service loaded")
    ref = parse_reference(request.image.image)
    creds = _credentials(request.auth) if request.HasField("auth") else None
    handler = request.image.runtime_handler or (
        request.sandbox_config.annotations.get("io.kubernetes.cri.runtime-handler", "")
        if request.HasField("sandbox_config")
        else ""
    )
    snapshotter = svc.config.snapshotter_for(handler)

    def lookup(host: str) -> Credentials | None:
        server = request.auth.server_address.removeprefix("https://").removeprefix("http://").split("/")[0]
        return creds if (not server or server == host) else None

    source = Registry(
        reference=str(ref),
        host_dir=svc.config.registry.config_path,
        credentials=lookup if creds is not None else None,
    )
    target = ImageStoreTarget(
        name=str(ref),
        platforms=(host_platform(),),
        unpacks=(Unpack(host_platform(), snapshotter),),
        labels={"io.cri-containerd.image": "managed"},
    )
    started = time.monotonic()
    await svc.transfer.transfer(svc.ctx, source, target, lambda _progress: None)
    info = ImageIndex(svc).get(str(ref))
    log.info("pulled %s as %s in %.2fs", ref, info.id, time.monotonic() - started)
    return api.PullImageResponse(image_ref=info.id)


async def remove_image(svc: CRIService, request: api.RemoveImageRequest) -> api.RemoveImageResponse:
    """Remove every name of the image; an absent image is not an error."""
    infos = ImageIndex(svc).lookup(request.image.image)
    if not infos:
        return api.RemoveImageResponse()
    for info in _grouped(ImageIndex(svc).all()).get(infos[0].id, []):
        try:
            svc.metadata.images.delete(svc.ctx, info.name)
        except NotFound:
            pass
    svc.metadata.mark_dirty()
    return api.RemoveImageResponse()


def _usage(path: str) -> tuple[int, int]:
    used = inodes = 0
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            used += st.st_blocks * 512
            inodes += 1
    return used, inodes


async def image_fs_info(svc: CRIService, request: api.ImageFsInfoRequest) -> api.ImageFsInfoResponse:
    """Usage of the snapshotter's directory, where image layers and writable layers live."""
    # kubelet asks every few seconds and the walk is proportional to the files stored: reuse a
    # result younger than stats_collect_period, as containerd serves a periodically synced figure.
    now = time.monotonic()
    if svc.fs_usage is not None and now - svc.fs_usage[0] < svc.config.stats_collect_period:
        cached: api.ImageFsInfoResponse = svc.fs_usage[1]
        return cached
    name = svc.config.containerd.snapshotter
    mountpoint = str(svc.root.parent / f"io.containerd.snapshotter.v1.{name}")
    used, inodes = await asyncio.to_thread(_usage, mountpoint)
    usage = api.FilesystemUsage(timestamp=time.time_ns())
    usage.fs_id.mountpoint = mountpoint
    usage.used_bytes.value = used
    usage.inodes_used.value = inodes
    response = api.ImageFsInfoResponse(image_filesystems=[usage], container_filesystems=[usage])
    svc.fs_usage = (now, response)
    return response
