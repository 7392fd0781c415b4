"""What a :class:`~.spdy_session.SpdySession` reports from received frames.

Each event is plain data; the session has already answered what needs no decision (pings,
window bookkeeping, protocol errors on single streams), so these are only what the application
must act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pycontainerd.cri.streaming.spdy_headers import Headers


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened ``stream_id``; the application must :meth:`~SpdySession.reply` or reset it."""

    stream_id: int
    headers: Headers
    fin: bool


@dataclass(frozen=True, slots=True)
class StreamReplied:
    """The peer accepted a stream this side opened."""

    stream_id: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Payload for ``stream_id``; report its consumption with :meth:`~SpdySession.acknowledge`."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed ``stream_id`` (FIN): nothing more will arrive on it."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """``stream_id`` is gone in both directions (reset by the peer, or by this side for a protocol error)."""

    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class WindowOpened:
    """The send window of ``stream_id`` (0: the session) grew; blocked writers may retry."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PingAcknowledged:
    """The peer echoed a ping this side sent."""

    ping_id: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer accepts no new streams; streams up to ``last_good_stream_id`` continue."""

    last_good_stream_id: int
    status: int


Event = (
    StreamOpened
    | StreamReplied
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowOpened
    | PingAcknowledged
    | GoAwayReceived
)
