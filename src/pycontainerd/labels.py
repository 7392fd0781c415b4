"""Label validation and the label keys containerd gives meaning to."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycontainerd.errdefs import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_LABEL_SIZE = 4096
"""containerd's limit on len(key) + len(value) of one label, in bytes."""

GC_ROOT = "containerd.io/gc.root"
GC_EXPIRE = "containerd.io/gc.expire"
GC_FLAT = "containerd.io/gc.flat"
GC_REF_CONTENT_PREFIX = "containerd.io/gc.ref.content"
GC_REF_SNAPSHOT_PREFIX = "containerd.io/gc.ref.snapshot."
DEFAULT_RUNTIME_LABEL = "containerd.io/defaults/runtime"
DEFAULT_SNAPSHOTTER_LABEL = "containerd.io/defaults/snapshotter"


def validate(key: str, value: str) -> None:
    """Raise InvalidArgument if one label is empty-keyed or too large."""
    if not key:
        raise InvalidArgument("label key must not be empty")
    size = len(key.encode()) + len(value.encode())
    if size > MAX_LABEL_SIZE:
        raise InvalidArgument(
            f"label key and value length ({size} bytes) greater than maximum size ({MAX_LABEL_SIZE} bytes), "
            f"key: {key[:10]}"
        )


def validate_all(labels: Mapping[str, str]) -> dict[str, str]:
    """Validate every label; returns a plain dict copy."""
    for key, value in labels.items():
        validate(key, value)
    return dict(labels)
