"""An in-process publish/subscribe exchange for events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pycontainerd import identifiers
from pycontainerd.errdefs import InvalidArgument

if TYPE_CHECKING:
    from google.protobuf.message import Message

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 1024


def type_url(message: Message) -> str:
    """The bare type URL containerd uses for ``message`` (no ``type.googleapis.com/``)."""
    return message.DESCRIPTOR.full_name


def validate_topic(topic: str) -> None:
    """Topics are ``/``-rooted paths of identifier components, e.g. ``/tasks/exit``."""
    if not topic.startswith("/"):
        raise InvalidArgument(f'must start with "/": {topic!r}')
    if topic == "/":
        raise InvalidArgument("must not be just /")
    for part in topic[1:].split("/"):
        identifiers.validate(part)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event as delivered to subscribers.

    Attributes:
        timestamp_ns: when it was published, nanoseconds since the epoch.
        namespace: the namespace it happened in.
        topic: e.g. ``/namespaces/create``.
        type_url: bare full name of the payload message.
        value: the serialized payload.
    """

    timestamp_ns: int
    namespace: str
    topic: str
    type_url: str
    value: bytes


Filter = Callable[[Envelope], bool]


class Exchange:
    """Fan events out to every subscriber whose filter accepts them.

    A subscriber that falls more than :data:`SUBSCRIBER_QUEUE` events behind is dropped
    rather than slowing the publishers down (its stream ends).
    """

    def __init__(self) -> None:
        self._subscribers: set[tuple[asyncio.Queue[Envelope | None], Filter | None]] = set()

    def publish(self, namespace: str, topic: str, event: Message) -> Envelope:
        """Publish ``event`` now; never blocks."""
        identifiers.validate(namespace)
        validate_topic(topic)
        envelope = Envelope(time.time_ns(), namespace, topic, type_url(event), event.SerializeToString())
        self.forward(envelope)
        return envelope

    def publish_raw(self, namespace: str, topic: str, type_url_: str, value: bytes) -> Envelope:
        """Publish an already-serialized event (the Publish RPC)."""
        identifiers.validate(namespace)
        validate_topic(topic)
        envelope = Envelope(time.time_ns(), namespace, topic, type_url_, value)
        self.forward(envelope)
        return envelope

    def forward(self, envelope: Envelope) -> None:
        """Deliver an envelope that already carries its timestamp (e.g. from a shim)."""
        for sub in list(self._subscribers):
            queue, accept = sub
            if accept is not None and not accept(envelope):
                continue
            try:
                queue.put_nowait(envelope)
            except asyncio.QueueFull:
                log.warning("dropping slow event subscriber")
                self._subscribers.discard(sub)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)

    async def subscribe(self, accept: Filter | None = None) -> AsyncIterator[Envelope]:
        """Yield events published from now on that ``accept`` lets through."""
        queue: asyncio.Queue[Envelope | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        sub = (queue, accept)
        self._subscribers.add(sub)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)
