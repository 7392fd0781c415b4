"""Walking an image: index -> manifest (for a platform) -> config and layers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pycontainerd.core.content import parse_digest
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
        return tuple((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def platform(self) -> Platform:
        """The platform the config declares."""
        get = self.config.get
        return Platform(get("os") or "", get("architecture") or "", get("variant") or "")


def descriptor_from_json(raw: Any, *, media_type_required: bool = True) -> Descriptor:
    """A descriptor as an index or manifest spells it; InvalidArgument when malformed.

    Go's JSON decoding is the reference: ``mediaType`` and ``digest`` are strings (the digest a
    valid one), ``size`` an integer, ``annotations`` an object of strings.
    """
    if not isinstance(raw, dict):
        raise InvalidArgument(f"invalid descriptor {raw!r}: expected a JSON object")
    media_type = raw.get("mediaType", None if media_type_required else "")
    digest, size, annotations = raw.get("digest"), raw.get("size"), raw.get("annotations") or {}
    if not isinstance(media_type, str):
        raise InvalidArgument(f"invalid descriptor {raw!r}: mediaType must be a string")
    if not isinstance(digest, str):
        raise InvalidArgument(f"invalid descriptor {raw!r}: digest must be a string")
    parse_digest(digest)
    if not isinstance(size, int) or isinstance(size, bool):
        raise InvalidArgument(f"invalid descriptor {raw!r}: size must be an integer")
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise InvalidArgument(f"invalid descriptor {raw!r}: annotations must map strings to strings")
    return Descriptor(media_type, digest, size, dict(annotations))


def index_entries(doc: dict[str, Any]) -> list[tuple[dict[str, Any], Descriptor]]:
    """Each entry of an index's ``manifests`` with its descriptor (``mediaType`` optional);
    InvalidArgument unless every entry is a descriptor whose ``platform``, if any, is an object."""
    value = doc.get("manifests")
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidArgument("image index: manifests must be a list of descriptors")
    out = []
    for entry in value:
        desc = descriptor_from_json(entry, media_type_required=False)
        if entry.get("platform") is not None and not isinstance(entry["platform"], dict):
            raise InvalidArgument(f"image index: platform of {desc.digest} must be an object")
        out.append((entry, desc))
    return out


def manifest_entries(
    doc: dict[str, Any], *, config_required: bool = True
) -> tuple[Descriptor | None, list[Descriptor]]:
    """A manifest's config descriptor (None when absent and not required) and layer descriptors
    (``mediaType`` optional); InvalidArgument when malformed."""
    config = doc.get("config")
    if not config and not config_required:
        config_desc = None
    elif isinstance(config, dict):
        config_desc = descriptor_from_json(config, media_type_required=False)
    else:
        raise InvalidArgument("image manifest: config must be a descriptor")
    layers = doc.get("layers")
    if layers is None:
        return config_desc, []
    if not isinstance(layers, list):
        raise InvalidArgument("image manifest: layers must be a list of descriptors")
    return config_desc, [descriptor_from_json(layer, media_type_required=False) for layer in layers]


def _descriptor(raw: Any) -> Descriptor:
    return descriptor_from_json(raw)


def _load(read: ReadBlob, desc: Descriptor) -> dict[str, Any]:
    data = read(desc.digest)
    if "sha256:" + hashlib.sha256(data).hexdigest() != desc.digest:
        raise InvalidArgument(f"content {desc.digest} does not match its digest")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise InvalidArgument(f"{desc.media_type} {desc.digest} is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{desc.media_type} {desc.digest} is not a JSON object")
    return doc


def _objects(doc: dict[str, Any], key: str, desc: Descriptor) -> list[dict[str, Any]]:
    """The list of objects at ``doc[key]`` (absent or null: none); InvalidArgument otherwise."""
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidArgument(f"{desc.digest}: {key} must be a list of objects")
    return value


def _media_type(desc: Descriptor, doc: dict[str, Any]) -> str:
    declared = doc.get("mediaType") or ""
    if not isinstance(declared, str):
        raise InvalidArgument(f"{desc.digest}: mediaType must be a string")
    if desc.media_type in DOCKER_SCHEMA1 or declared in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise Unimplemented(
            "media type Docker Image Manifest Version 2, Schema 1 is no longer supported since containerd v2.0; "
            "rebuild or re-push the image in Docker schema 2 or OCI format"
        )
    if "manifests" in doc and desc.media_type not in MANIFESTS:
        kind = declared or OCI_INDEX
    else:
        kind = declared or desc.media_type
    _check_unambiguous(desc, doc, kind)
    return kind


def _check_unambiguous(desc: Descriptor, doc: dict[str, Any], kind: str) -> None:
    """Refuse a document that reads as both a manifest and an index (CVE-2021-41190): the
    descriptor, the document's own ``mediaType`` and its fields must agree, as in containerd."""
    declared = doc.get("mediaType") or ""
    claims = {desc.media_type, declared, kind}
    if claims & set(MANIFESTS) and (doc.get("manifests") or claims & set(INDEXES)):
        raise InvalidArgument(f"{desc.digest}: expected a manifest but found an index")
    if claims & set(INDEXES) and (doc.get("config") or doc.get("layers") or claims & set(MANIFESTS)):
        raise InvalidArgument(f"{desc.digest}: expected an index but found a manifest")


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
            for child in _objects(doc, "manifests", desc):
                child_platform = child.get("platform")
                if child_platform is not None and not isinstance(child_platform, dict):
                    raise InvalidArgument(f"{desc.digest}: a manifest's platform must be an object")
                if all_platforms or matches(want, child_platform):
                    walk(_descriptor(child), depth + 1, child_platform)
            return
        if kind not in MANIFESTS:
            raise Unimplemented(f"unsupported image media type {kind}")
        if not isinstance(doc.get("config"), dict):
            raise InvalidArgument(f"manifest {desc.digest} has no config descriptor")
        config_desc = _descriptor(doc["config"])
        config = _load(read, config_desc)
        layers = tuple(_descriptor(layer) for layer in _objects(doc, "layers", desc))
        result = ImageManifest(desc, config_desc, _checked_config(config, config_desc), layers)
        if all_platforms or (declared_platform is not None) or matches(want, result.platform):
            found.append(result)

    walk(target, 0, None)
    if not found:
        raise NotFound(f"no match for platform {want} in manifest {target.digest}")
    return found


def _checked_config(config: dict[str, Any], desc: Descriptor) -> dict[str, Any]:
    """The image config, once the fields read from it have the types the OCI spec gives them."""
    for key in ("os", "architecture", "variant"):
        if not isinstance(config.get(key) or "", str):
            raise InvalidArgument(f"image config {desc.digest}: {key} must be a string")
    rootfs = config.get("rootfs") or {}
    if not isinstance(rootfs, dict):
        raise InvalidArgument(f"image config {desc.digest}: rootfs must be an object")
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidArgument(f"image config {desc.digest}: rootfs.diff_ids must be a list of digests")
    for diff_id in diff_ids:
        parse_digest(diff_id)
    return config


def chain_ids(diff_ids: tuple[str, ...] | list[str]) -> list[str]:
    """Chain IDs of a layer stack (``chain(n) = sha256(chain(n-1) + " " + diffid(n))``)."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out
