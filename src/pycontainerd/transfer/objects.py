"""The plain objects a transfer moves between: what the Transfer API's Any messages decode to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pycontainerd.images.manifest import INDEXES, MANIFESTS

if TYPE_CHECKING:
    from pycontainerd.core.images import Descriptor
    from pycontainerd.images.platforms import Platform
    from pycontainerd.remotes.credentials import CredentialsFn
    from pycontainerd.streaming.manager import Stream


@dataclass(frozen=True, slots=True)
class Reference:
    """An extra name an image store gives what it stores (containerd's ``ImageReference``)."""

    name: str
    is_prefix: bool = False
    allow_overwrite: bool = False
    add_digest: bool = False
    skip_named_digest: bool = False


@dataclass(frozen=True, slots=True)
class Unpack:
    """Unpack the manifest for ``platform`` into ``snapshotter`` ("" = the default)."""

    platform: Platform
    snapshotter: str = ""


@dataclass(frozen=True, slots=True)
class ImageStoreTarget:
    """The local image store as a source (by name) or destination (``ImageStore``)."""

    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    platforms: tuple[Platform, ...] = ()
    all_metadata: bool = False
    manifest_limit: int = 0
    extra_references: tuple[Reference, ...] = ()
    unpacks: tuple[Unpack, ...] = ()


@dataclass(frozen=True, slots=True)
class ImportStream:
    """An image archive the client streams in (``ImageImportStream``)."""

    stream: Stream
    media_type: str = ""
    force_compress: bool = False


@dataclass(frozen=True, slots=True)
class ExportStream:
    """An image archive streamed out to the client (``ImageExportStream``)."""

    stream: Stream
    media_type: str = ""
    platforms: tuple[Platform, ...] = ()
    all_platforms: bool = False
    skip_compatibility_manifest: bool = False
    skip_non_distributable: bool = False


@dataclass(frozen=True, slots=True)
class Registry:
    """A remote registry repository (``OCIRegistry``)."""

    reference: str
    host_dir: str = ""
    default_scheme: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    auth_stream: Stream | None = None
    credentials: CredentialsFn | None = None
    """In-process callers (the CRI plugin) hand credentials over directly instead of a stream."""


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress report (``containerd.types.transfer.Progress``)."""

    event: str
    name: str = ""
    parents: tuple[str, ...] = ()
    progress: int = 0
    total: int = 0
    desc: Descriptor | None = None


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class ReadStream:
    """Bytes the client sends for the transfer to read (``ReadStream``): here, a layer."""

    stream: Stream
    media_type: str = ""


@dataclass(frozen=True, slots=True)
class WriteStream:
    """Bytes the transfer writes back to the client (``WriteStream``): here, a layer."""

    stream: Stream
    media_type: str = ""


@dataclass(frozen=True, slots=True)
class SnapshotTarget:
    """A snapshot (``pycontainerd.types.transfer.v1.Snapshot``)."""

    key: str
    snapshotter: str = ""
    parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)


def ref_key(desc: Descriptor) -> str:
    """containerd's name for a blob in progress reports and ingest refs."""
    if desc.media_type in MANIFESTS:
        kind = "manifest"
    elif desc.media_type in INDEXES:
        kind = "index"
    elif "config" in desc.media_type:
        kind = "config"
    elif "layer" in desc.media_type or "rootfs" in desc.media_type:
        kind = "layer"
    else:
        kind = "unknown"
    return f"{kind}-{desc.digest}"
