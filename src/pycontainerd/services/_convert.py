"""Small protobuf conversions shared by servicers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf import timestamp_pb2

if TYPE_CHECKING:
    from google.protobuf.field_mask_pb2 import FieldMask


def timestamp(ns: int) -> timestamp_pb2.Timestamp:
    """Nanoseconds since the epoch as a protobuf Timestamp."""
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def from_timestamp(ts: timestamp_pb2.Timestamp) -> int:
    """A protobuf Timestamp as nanoseconds since the epoch."""
    return ts.seconds * 1_000_000_000 + ts.nanos


def mask_paths(has_mask: bool, mask: FieldMask) -> list[str]:
    """The paths of an optional update mask."""
    return list(mask.paths) if has_mask else []
