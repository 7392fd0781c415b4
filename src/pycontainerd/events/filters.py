"""Filtering envelopes with containerd's filter language (fields: namespace, topic, event.*)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from pycontainerd import filters

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pycontainerd.events.exchange import Envelope, Filter


def _decode(envelope: Envelope) -> Message | None:
    name = envelope.type_url.rsplit("/", 1)[-1]
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return None
    msg = message_factory.GetMessageClass(descriptor)()
    try:
        msg.ParseFromString(envelope.value)
    except DecodeError:
        return None
    return msg


def _event_field(msg: Message, path: Sequence[str]) -> str | None:
    value: object = msg
    for part in path:
        if isinstance(value, Message):
            if part not in value.DESCRIPTOR.fields_by_name:
                return None
            value = getattr(value, part)
        elif hasattr(value, "get"):  # map fields (labels.key)
            value = value.get(part)
        else:
            return None
    if value is None or isinstance(value, Message):
        return None
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return text or None


def envelope_adaptor(envelope: Envelope) -> filters.Adaptor:
    """Field values of an envelope for filters."""
    decoded: list[Message | None] = []

    def value(path: Sequence[str]) -> str | None:
        head = path[0]
        if head == "namespace" and len(path) == 1:
            return envelope.namespace or None
        if head == "topic" and len(path) == 1:
            return envelope.topic or None
        if head == "event" and len(path) > 1:
            if not decoded:
                decoded.append(_decode(envelope))
            msg = decoded[0]
            return _event_field(msg, path[1:]) if msg is not None else None
        return None

    return value


def compile_filters(texts: Sequence[str]) -> Filter | None:
    """A predicate for :meth:`Exchange.subscribe`, or None when there is nothing to filter."""
    parsed = filters.parse_all(texts)
    if not parsed:
        return None
    return lambda envelope: filters.match_any(parsed, envelope_adaptor(envelope))
