"""Image archives: read OCI-layout and ``docker save`` tars, write OCI tars ``docker load`` takes.

Both directions are plain blocking code over file objects (the caller runs them in a worker
thread); blobs go in and out through small protocols so that this module knows nothing of
the metadata store.

Reading is one pass over the tar stream. OCI layouts name blobs by digest
(``blobs/<alg>/<hex>``) and every blob is verified against its name; legacy ``docker save``
archives name files by path, so their digests are computed as they are written, and an OCI
index with one Docker schema 2 manifest per ``manifest.json`` entry is made for them. JSON
members are read into memory only up to :data:`MAX_JSON` bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol

from pycontainerd.archive.rootpath import clean_name
from pycontainerd.core.content import parse_digest
from pycontainerd.core.images import Descriptor
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.images.manifest import (
    DOCKER_MANIFEST,
    INDEXES,
    MANIFESTS,
    OCI_INDEX,
    index_entries,
    manifest_entries,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

MAX_JSON = 8 << 20
IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


class BlobSink(Protocol):
    """Where imported blobs go."""

    def put(self, source: IO[bytes], size: int, digest: str | None) -> str:
        """Store ``size`` bytes read from ``source``; verify them against ``digest`` when given,
        else compute it. Returns the digest. A blob already held may be skipped unread."""
        ...

    def size(self, digest: str) -> int:
        """The size of a stored blob."""
        ...

    def peek(self, digest: str, count: int) -> bytes:
        """The first ``count`` bytes of a stored blob."""
        ...


@dataclass(frozen=True, slots=True)
class Imported:
    """What an archive held: its index (stored as a blob too) and that index's document."""

    index: Descriptor
    document: dict[str, Any]


def _read_json(source: IO[bytes] | None, size: int, name: str) -> Any:
    if source is None or size > MAX_JSON:
        raise InvalidArgument(f"archive member {name} is larger than {MAX_JSON} bytes")
    try:
        return json.loads(source.read(size))
    except ValueError as exc:
        raise InvalidArgument(f"archive member {name} is not valid JSON") from exc


def import_archive(stream: IO[bytes], sink: BlobSink) -> Imported:
    """Read an image archive from ``stream`` into ``sink``."""
    documents: dict[str, Any] = {}
    by_path: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for member in tf:
                if not member.isreg():
                    continue
                name = clean_name(member.name)
                source = tf.extractfile(member)
                if name in ("index.json", "manifest.json"):
                    documents[name] = _read_json(source, member.size, name)
                    continue
                if name in ("oci-layout", "repositories") or source is None:
                    continue
                parts = name.split("/")
                if len(parts) == 3 and parts[0] == "blobs":
                    digest = parse_digest(f"{parts[1]}:{parts[2]}")
                    by_path[name] = sink.put(source, member.size, digest)
                else:  # legacy docker save: config JSON and layer.tar files named by path
                    by_path[name] = sink.put(source, member.size, None)
    except tarfile.TarError as exc:
        raise InvalidArgument(f"invalid image archive: {exc}") from exc
    if "index.json" in documents:
        index = documents["index.json"]
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise InvalidArgument("index.json is not an OCI image index")
        _name_from_docker_manifest(index, documents.get("manifest.json"), by_path)
    elif "manifest.json" in documents:
        index = _index_from_docker(documents["manifest.json"], by_path, sink)
    else:
        raise InvalidArgument("not an image archive: neither index.json nor manifest.json found")
    index_entries(index)  # every entry a descriptor: what the import reads next relies on it
    index.setdefault("schemaVersion", 2)
    index.setdefault("mediaType", OCI_INDEX)
    data = json.dumps(index, separators=(",", ":")).encode()
    digest = sink.put(io.BytesIO(data), len(data), "sha256:" + hashlib.sha256(data).hexdigest())
    return Imported(Descriptor(OCI_INDEX, digest, len(data)), index)


def _name_from_docker_manifest(index: dict[str, Any], docker: Any, by_path: dict[str, str]) -> None:
    """Docker 25+ writes an OCI layout plus manifest.json: take names from RepoTags where the
    index carries none."""
    if not isinstance(docker, list):
        return
    unnamed = [
        m
        for m in index["manifests"]
        if isinstance(m, dict) and IMAGE_NAME_ANNOTATION not in (m.get("annotations") or {})
    ]
    for entry, manifest in zip(docker, unnamed, strict=False):
        tags = entry.get("RepoTags") or [] if isinstance(entry, dict) else []
        if tags:
            manifest.setdefault("annotations", {})[IMAGE_NAME_ANNOTATION] = normalize(tags[0])


def _is_gzip(sink: BlobSink, digest: str) -> bool:
    return sink.peek(digest, 2) == b"\x1f\x8b"


def _index_from_docker(docker: Any, by_path: dict[str, str], sink: BlobSink) -> dict[str, Any]:
    if not isinstance(docker, list):
        raise InvalidArgument("manifest.json is not a docker save manifest list")
    manifests: list[dict[str, Any]] = []
    for entry in docker:
        try:
            config_digest = by_path[clean_name(entry["Config"])]
            layer_digests = [by_path[clean_name(p)] for p in entry["Layers"]]
        except (KeyError, TypeError) as exc:
            raise InvalidArgument(f"manifest.json names a file the archive does not hold: {exc}") from exc
        layers = [
            {
                "mediaType": DOCKER_LAYER_GZIP if _is_gzip(sink, d) else DOCKER_LAYER,
                "digest": d,
                "size": sink.size(d),
            }
            for d in layer_digests
        ]
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": sink.size(config_digest)},
            "layers": layers,
        }
        data = json.dumps(manifest, separators=(",", ":")).encode()
        digest = sink.put(io.BytesIO(data), len(data), "sha256:" + hashlib.sha256(data).hexdigest())
        tags = entry.get("RepoTags") or [None]
        for tag in tags:
            annotations = {}
            if tag:
                annotations[IMAGE_NAME_ANNOTATION] = normalize(tag)
                annotations[REF_NAME_ANNOTATION] = tag.rsplit(":", 1)[-1]
            manifests.append(
                {"mediaType": DOCKER_MANIFEST, "digest": digest, "size": len(data), "annotations": annotations}
            )
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}


class BlobSource(Protocol):
    """Where exported blobs come from."""

    def open(self, digest: str) -> IO[bytes]: ...

    def size(self, digest: str) -> int: ...


def children(document: dict[str, Any]) -> list[Descriptor]:
    """The descriptors an index or manifest document points at; InvalidArgument when malformed."""
    if "config" in document:
        config, layers = manifest_entries(document)
        assert config is not None
        return [config, *layers]
    return [desc for _, desc in index_entries(document)]


def export_archive(
    out: IO[bytes],
    source: BlobSource,
    images: Sequence[tuple[str, Descriptor]],
    keep: Callable[[dict[str, Any]], bool] | None = None,
) -> None:
    """Write an OCI-layout tar of ``images`` (name, target) with a docker ``manifest.json``.

    ``keep`` filters the manifests of an index (platform selection); blobs missing from the
    store under a dropped manifest are not needed. The tar is deterministic: members in a
    fixed order, zero times and owners.
    """
    written: set[str] = set()
    docker_entries: list[dict[str, Any]] = []
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:

        def add(name: str, data_source: IO[bytes], size: int) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = size, 0o444, 0
            tf.addfile(info, data_source)

        def blob(desc: Descriptor) -> None:
            if desc.digest in written:
                return
            written.add(desc.digest)
            alg, _, hexpart = desc.digest.partition(":")
            with source.open(desc.digest) as fh:
                add(f"blobs/{alg}/{hexpart}", fh, source.size(desc.digest))

        def walk(desc: Descriptor, name: str) -> None:
            if desc.media_type in INDEXES or desc.media_type in MANIFESTS or desc.media_type.endswith("+json"):
                with source.open(desc.digest) as fh:
                    document = json.loads(fh.read(MAX_JSON + 1))
                if desc.media_type in MANIFESTS:
                    kids = children(document)
                    for child in kids:
                        blob(child)
                    docker_entries.append(
                        {
                            "Config": _blob_path(kids[0].digest),
                            "RepoTags": [_docker_tag(name)] if name else [],
                            "Layers": [_blob_path(k.digest) for k in kids[1:]],
                        }
                    )
                elif desc.media_type in INDEXES:
                    for raw, child in zip(document.get("manifests") or [], children(document), strict=True):
                        if keep is None or keep(raw):
                            walk(child, name)
            blob(desc)

        manifests = []
        for name, target in images:
            walk(target, name)
            annotations = dict(target.annotations)
            annotations[IMAGE_NAME_ANNOTATION] = name
            if ":" in name.rsplit("/", 1)[-1]:
                annotations[REF_NAME_ANNOTATION] = name.rsplit(":", 1)[-1]
            manifests.append(
                {
                    "mediaType": target.media_type,
                    "digest": target.digest,
                    "size": target.size,
                    "annotations": annotations,
                }
            )
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
        add("index.json", io.BytesIO(index), len(index))
        docker = json.dumps(docker_entries).encode()
        add("manifest.json", io.BytesIO(docker), len(docker))
        add("oci-layout", io.BytesIO(OCI_LAYOUT), len(OCI_LAYOUT))


def _blob_path(digest: str) -> str:
    alg, _, hexpart = digest.partition(":")
    return f"blobs/{alg}/{hexpart}"


def _docker_tag(name: str) -> str:
    """``docker.io/library/busybox:latest`` -> ``busybox:latest`` (the form docker load shows)."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def normalize(name: str) -> str:
    """A docker-style short name in full: ``busybox`` -> ``docker.io/library/busybox:latest``."""
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        domain, path = "docker.io", name
        if "/" not in path:
            path = "library/" + path
    else:
        domain, path = first, rest
    if ":" not in path.rsplit("/", 1)[-1] and "@" not in path:
        path += ":latest"
    return f"{domain}/{path}"
