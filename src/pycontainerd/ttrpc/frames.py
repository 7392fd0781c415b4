"""ttrpc framing, without any I/O.

A frame is a 10-byte header followed by ``length`` bytes of data::

    0       4          8      9       10
    +-------+----------+------+-------+----------------+
    |length | stream id| type | flags | data (length)  |
    +-------+----------+------+-------+----------------+

``length`` and ``stream id`` are big-endian ``u32``. Data is limited to 4 MiB. Because that
limit is below 16 MiB, the first byte of a real frame is always zero; the protocol reserves it.

The decoder mirrors what Go's ttrpc does with an over-long frame (it skips the data and lets
the caller answer with ``RESOURCE_EXHAUSTED`` on that stream, keeping the connection) but a
length whose reserved high byte is set cannot come from a ttrpc peer: that is garbage, and
it raises :class:`FrameError` so the caller drops the connection instead of waiting for
gigabytes that will never come.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

HEADER_LENGTH = 10
MAX_MESSAGE_LENGTH = 4 << 20
"""Largest data length a peer may send or accept (4 MiB, as in Go's ttrpc)."""

# Lengths at or above this have the reserved first header byte set.
_RESERVED_LENGTH = 1 << 24
_HEADER = struct.Struct(">IIBB")


class MessageType(enum.IntEnum):
    """Frame types; values outside this enum must be tolerated (and ignored) for compatibility."""

    REQUEST = 1
    RESPONSE = 2
    DATA = 3  # streaming, ttrpc >= 1.2


class Flags(enum.IntFlag):
    """Frame flags (meaningful on streaming requests and data frames only)."""

    NONE = 0
    REMOTE_CLOSED = 0x1
    REMOTE_OPEN = 0x2
    NO_DATA = 0x4


class FrameError(Exception):
    """The byte stream is not ttrpc; the connection cannot be resynchronised."""


class FrameTooLargeError(FrameError):
    """A message exceeds :data:`MAX_MESSAGE_LENGTH`."""

    def __init__(self, length: int) -> None:
        self.length = length
        super().__init__(oversize_message(length))


def oversize_message(length: int) -> str:
    """The status message Go's ttrpc uses for a message over the limit."""
    return f"message length {length} exceed maximum message size of {MAX_MESSAGE_LENGTH}"


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete frame.

    Attributes:
        stream_id: The stream the frame belongs to (odd: client initiated).
        type: The message type; a plain int so that unknown future types survive decoding.
        flags: The raw flags byte.
        payload: The frame data.
    """

    stream_id: int
    type: int
    flags: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class OversizedFrame:
    """A frame whose data was over the limit; its data is skipped, never buffered.

    Attributes:
        stream_id: The stream the frame claimed to belong to.
        type: The message type from the header.
        flags: The raw flags byte.
        length: The announced data length.
    """

    stream_id: int
    type: int
    flags: int
    length: int

    @property
    def message(self) -> str:
        """A status message explaining the rejection (Go's wording)."""
        return oversize_message(self.length)


Event = Frame | OversizedFrame


def encode_header(stream_id: int, msg_type: int, length: int, flags: int = 0) -> bytes:
    """Pack a frame header.

    Args:
        stream_id: Stream identifier, ``0 <= stream_id < 2**32``.
        msg_type: Message type byte.
        length: Data length that will follow.
        flags: Flags byte.

    Returns:
        The 10 header bytes.

    Raises:
        FrameTooLargeError: If ``length`` exceeds :data:`MAX_MESSAGE_LENGTH`.
        ValueError: If a field does not fit its width.
    """
    if length > MAX_MESSAGE_LENGTH:
        raise FrameTooLargeError(length)
    try:
        return _HEADER.pack(length, stream_id, msg_type, flags)
    except struct.error as exc:
        raise ValueError(f"invalid ttrpc frame header field: {exc}") from exc


def encode_frame(stream_id: int, msg_type: int, payload: bytes, flags: int = 0) -> bytes:
    """Build a complete frame, refusing (as Go's sender does) data over 4 MiB.

    Args:
        stream_id: Stream identifier.
        msg_type: Message type byte.
        payload: Frame data.
        flags: Flags byte.

    Returns:
        Header and data, ready to be written in a single call (so that concurrent writers
        never interleave parts of two frames).

    Raises:
        FrameTooLargeError: If the payload exceeds :data:`MAX_MESSAGE_LENGTH`.
    """
    return encode_header(stream_id, msg_type, len(payload), flags) + payload


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive and collect whole frames.

    After a :class:`FrameError` the decoder is poisoned: every further :meth:`feed` raises
    the same error, as the stream position is unknown.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized frame still to discard
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    @property
    def idle(self) -> bool:
        """True when no partial frame is pending (a clean place for the peer to stop)."""
        return not self._buf and not self._skip

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Consume ``data`` and return the frames it completed (possibly none).

        Args:
            data: The next bytes read from the connection.

        Returns:
            Complete :class:`Frame` objects, and :class:`OversizedFrame` markers for frames
            that were too large (their data is consumed silently, as it arrives).

        Raises:
            FrameError: If a header cannot come from a ttrpc peer (reserved byte set).
        """
        if self._error is not None:
            raise self._error
        view = memoryview(data)
        if self._skip:
            dropped = min(self._skip, len(view))
            self._skip -= dropped
            view = view[dropped:]
        self._buf += view
        events: list[Event] = []
        buf = self._buf
        pos = 0  # consumed prefix, deleted once at the end rather than per frame
        while len(buf) - pos >= HEADER_LENGTH:
            length, stream_id, msg_type, flags = _HEADER.unpack_from(buf, pos)
            if length >= _RESERVED_LENGTH:
                header = bytes(buf[pos : pos + HEADER_LENGTH]).hex()
                self._error = FrameError(f"invalid ttrpc frame header {header}: reserved length byte set")
                buf.clear()
                raise self._error
            if length > MAX_MESSAGE_LENGTH:
                events.append(OversizedFrame(stream_id, msg_type, flags, length))
                dropped = min(length, len(buf) - pos - HEADER_LENGTH)
                pos += HEADER_LENGTH + dropped
                self._skip = length - dropped
                if self._skip:
                    break
                continue
            end = pos + HEADER_LENGTH + length
            if len(buf) < end:
                break
            events.append(Frame(stream_id, msg_type, flags, bytes(buf[pos + HEADER_LENGTH : end])))
            pos = end
        del buf[:pos]
        return events
