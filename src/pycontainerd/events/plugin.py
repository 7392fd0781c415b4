"""Registration of the event exchange (``io.containerd.event.v1.exchange``)."""

from __future__ import annotations

from pycontainerd.events.exchange import Exchange
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration


def _init(ctx: InitContext) -> Exchange:
    return Exchange()


REGISTRATION = Registration(type=types.EVENT, id="exchange", init=_init)
