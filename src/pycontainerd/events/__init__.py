"""The event exchange: publish, forward and subscribe to containerd events.

Events are protobuf messages packed in ``Any`` with containerd's bare type URLs
(``containerd.events.NamespaceCreate``), wrapped in an :class:`Envelope` that carries the
timestamp, namespace and topic.
"""

from pycontainerd.events.exchange import Envelope as Envelope
from pycontainerd.events.exchange import Exchange as Exchange

__all__ = ["Envelope", "Exchange"]
