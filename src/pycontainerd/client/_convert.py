"""Protobuf messages to the value types the client returns (and back)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import any_pb2, field_mask_pb2

from pycontainerd.api.containerd.services.containers.v1 import containers_pb2
from pycontainerd.api.containerd.services.content.v1 import content_pb2
from pycontainerd.api.containerd.services.images.v1 import images_pb2
from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2
from pycontainerd.api.containerd.types import descriptor_pb2, mount_pb2
from pycontainerd.core import containers, content, images, snapshots
from pycontainerd.pbtime import from_timestamp, timestamp

if TYPE_CHECKING:
    from collections.abc import Iterable


def any_from_pb(value: any_pb2.Any) -> containers.AnyValue | None:
    """An Any as the opaque value type (None when unset)."""
    if not value.type_url and not value.value:
        return None
    return containers.AnyValue(value.type_url, value.value)


def any_to_pb(value: containers.AnyValue | None) -> any_pb2.Any:
    """The opaque value type as an Any."""
    if value is None:
        return any_pb2.Any()
    return any_pb2.Any(type_url=value.type_url, value=value.value)


def mask(fieldpaths: Iterable[str]) -> field_mask_pb2.FieldMask:
    """An update mask of ``fieldpaths``."""
    return field_mask_pb2.FieldMask(paths=list(fieldpaths))


def container_from_pb(m: Any) -> containers.Container:
    """A ``containers.v1.Container`` message as a record."""
    return containers.Container(
        id=m.id,
        runtime=containers.Runtime(m.runtime.name, any_from_pb(m.runtime.options)),
        spec=any_from_pb(m.spec),
        image=m.image,
        snapshotter=m.snapshotter,
        snapshot_key=m.snapshot_key,
        sandbox=m.sandbox,
        labels=dict(m.labels),
        extensions={k: containers.AnyValue(v.type_url, v.value) for k, v in m.extensions.items()},
        created_at=from_timestamp(m.created_at),
        updated_at=from_timestamp(m.updated_at),
    )


def container_to_pb(c: containers.Container) -> Any:
    """A record as a ``containers.v1.Container`` message (timestamps are the server's)."""
    m = containers_pb2.Container(
        id=c.id,
        runtime=containers_pb2.Container.Runtime(name=c.runtime.name),
        image=c.image,
        snapshotter=c.snapshotter,
        snapshot_key=c.snapshot_key,
        sandbox=c.sandbox,
        labels=c.labels,
    )
    if c.runtime.options is not None:
        m.runtime.options.CopyFrom(any_to_pb(c.runtime.options))
    if c.spec is not None:
        m.spec.CopyFrom(any_to_pb(c.spec))
    for key, value in c.extensions.items():
        m.extensions[key].CopyFrom(any_to_pb(value))
    return m


def descriptor_from_pb(d: Any) -> images.Descriptor:
    """A ``types.Descriptor`` as the core descriptor."""
    return images.Descriptor(d.media_type, d.digest, d.size, dict(d.annotations))


def descriptor_to_pb(d: images.Descriptor) -> Any:
    """The core descriptor as a ``types.Descriptor``."""
    return descriptor_pb2.Descriptor(media_type=d.media_type, digest=d.digest, size=d.size, annotations=d.annotations)


def image_from_pb(m: Any) -> images.Image:
    """An ``images.v1.Image`` as the core image."""
    return images.Image(
        name=m.name,
        target=descriptor_from_pb(m.target),
        labels=dict(m.labels),
        created_at=from_timestamp(m.created_at),
        updated_at=from_timestamp(m.updated_at),
    )


def image_to_pb(i: images.Image) -> Any:
    """The core image as an ``images.v1.Image``."""
    return images_pb2.Image(name=i.name, target=descriptor_to_pb(i.target), labels=i.labels)


def content_info_from_pb(m: Any) -> content.Info:
    """A ``content.v1.Info`` as the core info."""
    return content.Info(
        digest=m.digest,
        size=m.size,
        created_at=from_timestamp(m.created_at),
        updated_at=from_timestamp(m.updated_at),
        labels=dict(m.labels),
    )


def content_info_to_pb(i: content.Info) -> Any:
    """The core info as a ``content.v1.Info``."""
    return content_pb2.Info(digest=i.digest, size=i.size, labels=i.labels, created_at=timestamp(i.created_at))


def content_status_from_pb(m: Any) -> content.Status:
    """A ``content.v1.Status`` as the core status."""
    return content.Status(
        ref=m.ref,
        offset=m.offset,
        total=m.total,
        expected=m.expected,
        started_at=from_timestamp(m.started_at),
        updated_at=from_timestamp(m.updated_at),
    )


def snapshot_info_from_pb(m: Any) -> snapshots.Info:
    """A ``snapshots.v1.Info`` as the core info."""
    return snapshots.Info(
        name=m.name,
        kind=snapshots.Kind(m.kind),
        parent=m.parent,
        labels=dict(m.labels),
        created_at=from_timestamp(m.created_at),
        updated_at=from_timestamp(m.updated_at),
    )


def snapshot_info_to_pb(i: snapshots.Info) -> Any:
    """The core info as a ``snapshots.v1.Info``."""
    return snapshots_pb2.Info(name=i.name, parent=i.parent, kind=i.kind.name, labels=i.labels)


def mount_from_pb(m: Any) -> snapshots.Mount:
    """A ``types.Mount`` as the core mount."""
    return snapshots.Mount(type=m.type, source=m.source, options=tuple(m.options), target=m.target)


def mount_to_pb(m: snapshots.Mount) -> Any:
    """The core mount as a ``types.Mount``."""
    return mount_pb2.Mount(type=m.type, source=m.source, options=list(m.options), target=m.target)
