"""Building the ``containerd.types.Envelope`` a shim or a publish hook forwards."""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf import any_pb2

from pycontainerd import pbtime
from pycontainerd.api.containerd.types import event_pb2

if TYPE_CHECKING:
    from google.protobuf.message import Message


def envelope(namespace: str, topic: str, event: any_pb2.Any | Message) -> event_pb2.Envelope:
    """An envelope stamped now; a message is packed with containerd's bare type URL."""
    if not isinstance(event, any_pb2.Any):
        event = any_pb2.Any(type_url=event.DESCRIPTOR.full_name, value=event.SerializeToString())
    return event_pb2.Envelope(timestamp=pbtime.now(), namespace=namespace, topic=topic, event=event)
