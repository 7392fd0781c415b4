"""``containerd.services.events.ttrpc.v1.Events/Forward`` on the ttrpc socket.

Shims publish their events (task create, start, exit, delete...) here. Without it a shim
lingers for seconds after Shutdown, retrying.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.ttrpc.events.v1 import events_pb2 as pb
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services.events import forward

if TYPE_CHECKING:
    from pycontainerd.events.exchange import Exchange

SERVICE = "containerd.services.events.ttrpc.v1.Events"


class TTRPCEventsService:
    """Forwards shim events into the exchange."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    def register_ttrpc(self, server: Any) -> None:
        """Add this service to the ttrpc server."""
        server.register(SERVICE, {"Forward": (pb.ForwardRequest, self.forward)})

    async def forward(self, ctx: Any, request: pb.ForwardRequest) -> empty_pb2.Empty:
        """Deliver one envelope."""
        forward(self._exchange, request.envelope)
        return empty_pb2.Empty()


def _init(ctx: InitContext) -> TTRPCEventsService:
    return TTRPCEventsService(ctx.plugins.first(types.EVENT))


REGISTRATION = Registration(type=types.TTRPC, id="events", init=_init, requires=(types.EVENT,))
