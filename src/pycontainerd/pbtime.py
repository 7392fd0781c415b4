"""Nanosecond integers <-> protobuf Timestamps (every stored time in pycontainerd is ns)."""

from __future__ import annotations

import time

from google.protobuf import timestamp_pb2


def timestamp(ns: int) -> timestamp_pb2.Timestamp:
    """Nanoseconds since the epoch as a protobuf Timestamp."""
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def from_timestamp(ts: timestamp_pb2.Timestamp) -> int:
    """A protobuf Timestamp as nanoseconds since the epoch."""
    return ts.seconds * 1_000_000_000 + ts.nanos


def now() -> timestamp_pb2.Timestamp:
    """The current time as a protobuf Timestamp."""
    return timestamp(time.time_ns())
