"""Small protobuf conversions shared by servicers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycontainerd.pbtime import from_timestamp as from_timestamp
from pycontainerd.pbtime import timestamp as timestamp

if TYPE_CHECKING:
    from google.protobuf.field_mask_pb2 import FieldMask


def mask_paths(has_mask: bool, mask: FieldMask) -> list[str]:
    """The paths of an optional update mask."""
    return list(mask.paths) if has_mask else []
