"""Events (``containerd.services.events.v1``): subscribe to what the daemon publishes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pycontainerd.api.containerd.services.events.v1 import events_pb2 as pb
from pycontainerd.api.containerd.services.events.v1 import events_pb2_grpc as pb_grpc
from pycontainerd.client._convert import any_from_pb
from pycontainerd.pbtime import from_timestamp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from pycontainerd.client.connection import Connection
    from pycontainerd.core.containers import AnyValue


@dataclass(frozen=True, slots=True)
class Event:
    """One published event; ``event`` is the packed message (``containerd.events.TaskExit``...)."""

    timestamp: int
    namespace: str
    topic: str
    event: AnyValue | None


def decode(event: AnyValue | None) -> dict[str, object]:
    """The event's fields as a dict (empty for an unknown type), for printing."""
    if event is None:
        return {}
    from google.protobuf import json_format, symbol_database

    import pycontainerd.api.containerd.events.container_pb2
    import pycontainerd.api.containerd.events.content_pb2
    import pycontainerd.api.containerd.events.image_pb2
    import pycontainerd.api.containerd.events.namespace_pb2
    import pycontainerd.api.containerd.events.snapshot_pb2
    import pycontainerd.api.containerd.events.task_pb2  # noqa: F401  (registers the types)

    name = event.type_url.rsplit("/", 1)[-1]
    try:
        cls = symbol_database.Default().GetSymbol(name)
    except KeyError:
        return {}
    message = cls.FromString(event.value)
    out: dict[str, object] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return out


class Events:
    """The daemon's event stream (every namespace)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._stub = pb_grpc.EventsStub(conn.channel())

    async def subscribe(self, filters: Sequence[str] = ()) -> AsyncIterator[Event]:
        """Events as they are published, matching any of ``filters`` (``topic~="/tasks/"``)."""
        async for envelope in self._conn.call_stream(self._stub.Subscribe, pb.SubscribeRequest(filters=list(filters))):
            yield Event(
                from_timestamp(envelope.timestamp), envelope.namespace, envelope.topic, any_from_pb(envelope.event)
            )
