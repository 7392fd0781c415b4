"""Walking an image: index -> manifest (for a platform) -> config and layers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pycontainerd.core.images import Descriptor
from pycontainerd.errdefs import InvalidArgument, NotFound, Unimplemented
from pycontainerd.images.platforms import Platform, host_platform, matches

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
MAX_DEPTH = 8

ReadBlob = Callable[[str], bytes]
"""Returns a blob's bytes by digest (NotFound if the store does not hold it)."""


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """One platform's manifest, its config and its layers."""

    descriptor: Descriptor
    config_descriptor: Descriptor
    config: dict[str, Any]
    layers: tuple[Descriptor, ...]

    @property
    def diff_ids(self) -> tuple[str, ...]:
        """Uncompressed layer digests, from the config."""
        return tuple(self.config.get("rootfs", {}).get("diff_ids", []))

    @property
    def platform(self) -> Platform:
        """The platform the config declares."""
        return Platform(self.config.get("os", ""), self.config.get("architecture", ""), self.config.get("variant", ""))


def descriptor_from_json(raw: dict[str, Any], *, media_type_required: bool = True) -> Descriptor:
    """A descriptor as an index or manifest spells it; InvalidArgument when malformed."""
    try:
        media_type = raw["mediaType"] if media_type_required else raw.get("mediaType", "")
        return Descriptor(media_type, raw["digest"], int(raw["size"]), dict(raw.get("annotations") or {}))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidArgument(f"invalid descriptor {raw!r}") from exc


def _descriptor(raw: dict[str, Any]) -> Descriptor:
    return descriptor_from_json(raw)


def _load(read: ReadBlob, desc: Descriptor) -> dict[str, Any]:
    data = read(desc.digest)
    if "sha256:" + hashlib.sha256(data).hexdigest() != desc.digest:
        raise InvalidArgument(f"content {desc.digest} does not match its digest")
    try:
        doc: dict[str, Any] = json.loads(data)
    except ValueError as exc:
        raise InvalidArgument(f"{desc.media_type} {desc.digest} is not valid JSON") from exc
    return doc


def _media_type(desc: Descriptor, doc: dict[str, Any]) -> str:
    declared = doc.get("mediaType") or ""
    if desc.media_type in DOCKER_SCHEMA1 or declared in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise Unimplemented(
            "media type Docker Image Manifest Version 2, Schema 1 is no longer supported since containerd v2.0; "
            "rebuild or re-push the image in Docker schema 2 or OCI format"
        )
    if "manifests" in doc and desc.media_type not in MANIFESTS:
        return declared or OCI_INDEX
    return declared or desc.media_type


def manifests(
    read: ReadBlob, target: Descriptor, platform: Platform | None = None, *, all_platforms: bool = False
) -> list[ImageManifest]:
    """The manifests of ``target`` for ``platform`` (host by default), best match first.

    Raises NotFound when no manifest fits the platform.
    """
    want = platform or host_platform()
    found: list[ImageManifest] = []

    def walk(desc: Descriptor, depth: int, declared_platform: dict[str, str] | None) -> None:
        if depth > MAX_DEPTH:
            raise InvalidArgument("image index nesting too deep")
        doc = _load(read, desc)
        kind = _media_type(desc, doc)
        if kind in INDEXES:
            for child in doc.get("manifests") or []:
                child_platform = child.get("platform")
                if all_platforms or matches(want, child_platform):
                    walk(_descriptor(child), depth + 1, child_platform)
            return
        if kind not in MANIFESTS:
            raise Unimplemented(f"unsupported image media type {kind}")
        config_desc = _descriptor(doc["config"])
        config = _load(read, config_desc)
        result = ImageManifest(
            desc, config_desc, config, tuple(_descriptor(layer) for layer in doc.get("layers") or [])
        )
        if all_platforms or (declared_platform is not None) or matches(want, result.platform):
            found.append(result)

    walk(target, 0, None)
    if not found:
        raise NotFound(f"no match for platform {want} in manifest {target.digest}")
    return found


def chain_ids(diff_ids: tuple[str, ...] | list[str]) -> list[str]:
    """Chain IDs of a layer stack (``chain(n) = sha256(chain(n-1) + " " + diffid(n))``)."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out
