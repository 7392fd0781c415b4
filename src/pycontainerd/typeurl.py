"""Packing messages into ``google.protobuf.Any`` the way containerd's typeurl does."""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf import any_pb2

if TYPE_CHECKING:
    from google.protobuf.message import Message


def pack(message: Message) -> any_pb2.Any:
    """``message`` in an Any with containerd's bare type URL (no ``type.googleapis.com/``)."""
    return any_pb2.Any(type_url=message.DESCRIPTOR.full_name, value=message.SerializeToString())


def name_of(value: any_pb2.Any) -> str:
    """The full message name in an Any, whether its URL is bare or prefixed."""
    return value.type_url.rsplit("/", 1)[-1]
