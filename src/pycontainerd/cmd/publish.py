"""``pycontainerd publish``: forward one event to a daemon over ttrpc (the shims' publish hook)."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from google.protobuf import any_pb2, empty_pb2

from pycontainerd import identifiers
from pycontainerd.api.containerd.services.ttrpc.events.v1 import events_pb2
from pycontainerd.errdefs import ContainerdError
from pycontainerd.events import wire
from pycontainerd.events.exchange import validate_topic
from pycontainerd.ttrpc.client import Client

if TYPE_CHECKING:
    from pycontainerd.api.containerd.types import event_pb2

SERVICE = "containerd.services.events.ttrpc.v1.Events"
TIMEOUT = 10.0


async def _forward(address: str, envelope: event_pb2.Envelope) -> None:
    async with await Client.connect(address.removeprefix("unix://"), timeout=TIMEOUT) as client:
        await client.call(
            SERVICE, "Forward", events_pb2.ForwardRequest(envelope=envelope), empty_pb2.Empty, timeout=TIMEOUT
        )


def publish(address: str, topic: str, namespace: str, payload: bytes) -> int:
    """Send ``payload`` (a serialized Any) as an event; returns the exit code."""
    try:
        identifiers.validate(namespace)
        validate_topic(topic)
        event = any_pb2.Any()
        event.ParseFromString(payload)
    except (ContainerdError, ValueError) as exc:
        print(f"pycontainerd publish: {exc}", file=sys.stderr)
        return 1
    envelope = wire.envelope(namespace, topic, event)
    try:
        asyncio.run(_forward(address, envelope))
    except Exception as exc:
        print(f"pycontainerd publish: {exc}", file=sys.stderr)
        return 1
    return 0
