"""Snapshots: layered filesystems a container's rootfs is mounted from.

The value types and the :class:`Snapshotter` protocol every backend implements (native,
overlayfs, ...). Keys are the backend's own names; the namespaced metadata layer maps each
namespace's keys onto backend keys.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence


class Kind(enum.IntEnum):
    """Snapshot kinds, numbered as on the wire (``containerd.services.snapshots.v1.Kind``)."""

    UNKNOWN = 0
    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3


@dataclass(frozen=True, slots=True)
class Info:
    """A snapshot; timestamps in nanoseconds since the epoch."""

    name: str
    kind: Kind
    parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """Disk usage of one snapshot (its own layer, not its parents)."""

    size: int = 0
    inodes: int = 0


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount, as ``mount -t type -o options source target`` would do it.

    ``chdir``, when set, is the working directory the mount must be made from: relative paths
    in ``source`` or in options such as ``lowerdir`` are resolved against it. It never
    crosses the wire (containerd's ``Mount`` message has no such field), so snapshotters
    emit absolute paths and only in-process mount helpers produce a ``chdir``.
    """

    type: str
    source: str
    options: tuple[str, ...] = ()
    target: str = ""
    chdir: str = ""


class Snapshotter(Protocol):
    """containerd's snapshotter interface (synchronous; callers may run it in a thread).

    Errors: NotFound for unknown keys, AlreadyExists for taken keys, FailedPrecondition for a
    parent that is not committed or a snapshot that still has children, InvalidArgument for
    an update of a field that cannot change.
    """

    def stat(self, key: str) -> Info: ...
    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info: ...
    def usage(self, key: str) -> Usage: ...
    def mounts(self, key: str) -> list[Mount]: ...
    def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]: ...
    def view(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]: ...
    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None: ...
    def remove(self, key: str) -> None: ...
    def walk(self) -> Iterator[Info]: ...
    def close(self) -> None: ...
