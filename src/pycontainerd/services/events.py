"""``containerd.services.events.v1.Events``: publish, forward and subscribe."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from google.protobuf import any_pb2, empty_pb2

from pycontainerd import identifiers
from pycontainerd.api.containerd.services.events.v1 import events_pb2 as pb
from pycontainerd.api.containerd.services.events.v1 import events_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import event_pb2
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.events.exchange import Envelope, Exchange, validate_topic
from pycontainerd.events.filters import compile_filters
from pycontainerd.namespaces import namespace_required
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services._context import request_context
from pycontainerd.services._convert import from_timestamp, timestamp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import grpc


def envelope_to_pb(envelope: Envelope) -> event_pb2.Envelope:
    """An exchange envelope as ``containerd.types.Envelope`` (bare type URL, as containerd)."""
    return event_pb2.Envelope(
        timestamp=timestamp(envelope.timestamp_ns),
        namespace=envelope.namespace,
        topic=envelope.topic,
        event=any_pb2.Any(type_url=envelope.type_url, value=envelope.value),
    )


def envelope_from_pb(message: event_pb2.Envelope) -> Envelope:
    """A forwarded envelope; a zero timestamp (Go's zero value) is filled with now."""
    ts = from_timestamp(message.timestamp) if message.HasField("timestamp") else 0
    if ts <= 0:
        ts = time.time_ns()
    return Envelope(ts, message.namespace, message.topic, message.event.type_url, message.event.value)


class EventsService(pb_grpc.EventsServicer):
    """The gRPC face of the event exchange."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_EventsServicer_to_server(self, server)

    async def Publish(self, request: pb.PublishRequest, context: Any) -> empty_pb2.Empty:
        ns = namespace_required(request_context(context))
        if not request.HasField("event"):
            raise InvalidArgument("event must not be empty")
        self._exchange.publish_raw(ns, request.topic, request.event.type_url, request.event.value)
        return empty_pb2.Empty()

    async def Forward(self, request: pb.ForwardRequest, context: Any) -> empty_pb2.Empty:
        forward(self._exchange, request.envelope)
        return empty_pb2.Empty()

    async def Subscribe(self, request: pb.SubscribeRequest, context: Any) -> AsyncIterator[event_pb2.Envelope]:
        accept = compile_filters(list(request.filters))
        async for envelope in self._exchange.subscribe(accept):
            yield envelope_to_pb(envelope)


def forward(exchange: Exchange, message: event_pb2.Envelope) -> None:
    """Validate and deliver a forwarded envelope (shared with the ttrpc Events service)."""
    identifiers.validate(message.namespace)
    validate_topic(message.topic)
    exchange.forward(envelope_from_pb(message))


def _init(ctx: InitContext) -> EventsService:
    return EventsService(ctx.plugins.first(types.EVENT))


REGISTRATION = Registration(type=types.GRPC, id="events", init=_init, requires=(types.EVENT,))
