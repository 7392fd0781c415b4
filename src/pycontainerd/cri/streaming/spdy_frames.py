"""SPDY/3.1 frames, without I/O.

Every frame starts with 8 bytes. A control frame (C bit set) carries version 3 and a type; a data
frame carries a 31-bit stream id; both end with 8 bits of flags and a 24-bit length::

    +----------------------------------+   +----------------------------------+
    |1| version (15) |    type (16)    |   |0|        stream id (31)          |
    +----------------------------------+   +----------------------------------+
    | flags (8) |     length (24)      |   | flags (8) |     length (24)      |
    +----------------------------------+   +----------------------------------+

Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) go through :mod:`.spdy_headers`, whose zlib
streams are per connection and direction: frames must be encoded and decoded in wire order.

Rule: decoding errors raise :class:`SpdyProtocolError`; the byte stream cannot be
resynchronised after one, so the caller sends GOAWAY and closes.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from pycontainerd.cri.streaming.spdy_headers import MAX_HEADER_BLOCK, HeaderCompressor, HeaderDecompressor, Headers
from pycontainerd.cri.streaming.spdy_headers import SpdyProtocolError as SpdyProtocolError

VERSION = 3
HEADER_LENGTH = 8
MAX_LENGTH = (1 << 24) - 1
"""Largest frame payload the 24-bit length allows."""


FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_CLEAR_SETTINGS = 0x01

_U32 = struct.Struct(">I")
_PAIR = struct.Struct(">II")


class ControlType(enum.IntEnum):
    """Control frame types of SPDY/3.1."""

    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(enum.IntEnum):
    """RST_STREAM status codes."""

    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    FRAME_TOO_LARGE = 11


class GoAwayStatus(enum.IntEnum):
    """GOAWAY status codes."""

    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class SettingId(enum.IntEnum):
    """SETTINGS ids (only INITIAL_WINDOW_SIZE changes behaviour here)."""

    UPLOAD_BANDWIDTH = 1
    DOWNLOAD_BANDWIDTH = 2
    ROUND_TRIP_TIME = 3
    MAX_CONCURRENT_STREAMS = 4
    CURRENT_CWND = 5
    DOWNLOAD_RETRANS_RATE = 6
    INITIAL_WINDOW_SIZE = 7
    CLIENT_CERTIFICATE_VECTOR_SIZE = 8


@dataclass(frozen=True, slots=True)
class SynStream:
    """Open a stream; ``fin``: the sender sends nothing more, ``unidirectional``: the receiver must not."""

    stream_id: int
    headers: Headers
    associated_to: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True, slots=True)
class SynReply:
    """Accept a stream the peer opened."""

    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True, slots=True)
class RstStream:
    """Abort a stream in both directions."""

    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Settings:
    """Session settings, as ``(id, value, flags)`` triples."""

    entries: tuple[tuple[int, int, int], ...]
    clear: bool = False

    def value(self, setting: SettingId) -> int | None:
        """The last value given for ``setting``, or None."""
        found = None
        for ident, value, _flags in self.entries:
            if ident == setting:
                found = value
        return found


@dataclass(frozen=True, slots=True)
class Ping:
    """A liveness probe; the receiver echoes the peer's ids (parity tells whose)."""

    ping_id: int


@dataclass(frozen=True, slots=True)
class GoAway:
    """The sender accepts no more streams above ``last_good_stream_id``."""

    last_good_stream_id: int
    status: int = GoAwayStatus.OK


@dataclass(frozen=True, slots=True)
class HeadersFrame:
    """More headers for an open stream."""

    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    """Grow the sender's receive window of a stream (or of the session, stream 0) by ``delta``."""

    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True)
class Data:
    """Stream payload; ``fin`` half-closes the sender's side."""

    stream_id: int
    data: bytes
    fin: bool = False


@dataclass(frozen=True, slots=True)
class UnknownControl:
    """A control frame type this implementation ignores (the spec says to)."""

    type: int
    flags: int
    payload: bytes


Frame = (
    SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate | Data | UnknownControl
)


def _control(kind: ControlType, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_LENGTH:
        raise ValueError("frame payload too large")
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def encode_frame(frame: Frame, compressor: HeaderCompressor) -> bytes:
    """Serialise ``frame``; header blocks go through ``compressor`` (so order matters)."""
    match frame:
        case Data(stream_id, data, fin):
            if len(data) > MAX_LENGTH:
                raise ValueError("frame payload too large")
            return struct.pack(">II", stream_id & 0x7FFFFFFF, (FLAG_FIN if fin else 0) << 24 | len(data)) + data
        case SynStream(stream_id, headers, associated_to, priority, fin, unidirectional):
            flags = (FLAG_FIN if fin else 0) | (FLAG_UNIDIRECTIONAL if unidirectional else 0)
            fixed = struct.pack(">IIBB", stream_id, associated_to, (priority & 0x7) << 5, 0)
            return _control(ControlType.SYN_STREAM, flags, fixed + compressor.compress(headers))
        case SynReply(stream_id, headers, fin):
            payload = _U32.pack(stream_id) + compressor.compress(headers)
            return _control(ControlType.SYN_REPLY, FLAG_FIN if fin else 0, payload)
        case HeadersFrame(stream_id, headers, fin):
            payload = _U32.pack(stream_id) + compressor.compress(headers)
            return _control(ControlType.HEADERS, FLAG_FIN if fin else 0, payload)
        case RstStream(stream_id, status):
            return _control(ControlType.RST_STREAM, 0, _PAIR.pack(stream_id, status))
        case Settings(entries, clear):
            body = b"".join(_PAIR.pack((flags << 24) | ident, value) for ident, value, flags in entries)
            return _control(ControlType.SETTINGS, FLAG_CLEAR_SETTINGS if clear else 0, _U32.pack(len(entries)) + body)
        case Ping(ping_id):
            return _control(ControlType.PING, 0, _U32.pack(ping_id))
        case GoAway(last_good, status):
            return _control(ControlType.GOAWAY, 0, _PAIR.pack(last_good, status))
        case WindowUpdate(stream_id, delta):
            return _control(ControlType.WINDOW_UPDATE, 0, _PAIR.pack(stream_id, delta))
        case UnknownControl(kind, flags, payload):
            return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload
    raise TypeError(f"not a SPDY frame: {frame!r}")  # pragma: no cover


class FrameReader:
    """Turn received bytes into frames: :meth:`feed` bytes, then call :meth:`next_frame` until None."""

    def __init__(self, *, max_header_block: int = MAX_HEADER_BLOCK) -> None:
        self._buffer = bytearray()
        self._headers = HeaderDecompressor(max_header_block)

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buffer += data

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None until more bytes arrive."""
        if len(self._buffer) < HEADER_LENGTH:
            return None
        first, flags_length = struct.unpack_from(">II", self._buffer)
        length = flags_length & 0xFFFFFF
        if len(self._buffer) < HEADER_LENGTH + length:
            return None
        payload = bytes(self._buffer[HEADER_LENGTH : HEADER_LENGTH + length])
        del self._buffer[: HEADER_LENGTH + length]
        flags = flags_length >> 24
        if not first & 0x80000000:
            return Data(first & 0x7FFFFFFF, payload, bool(flags & FLAG_FIN))
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyProtocolError(f"unsupported SPDY version {version}")
        return self._control(kind, flags, payload)

    def _control(self, kind: int, flags: int, payload: bytes) -> Frame:
        fin = bool(flags & FLAG_FIN)
        if kind == ControlType.SYN_STREAM:
            _need(payload, 10, exact=False)
            stream_id, associated, priority = struct.unpack_from(">IIB", payload)
            headers = self._headers.decompress(payload[10:])
            return SynStream(
                _stream_id(stream_id),
                headers,
                associated & 0x7FFFFFFF,
                priority >> 5,
                fin,
                bool(flags & FLAG_UNIDIRECTIONAL),
            )
        if kind in (ControlType.SYN_REPLY, ControlType.HEADERS):
            _need(payload, 4, exact=False)
            stream_id = _stream_id(_U32.unpack_from(payload)[0])
            headers = self._headers.decompress(payload[4:])
            if kind == ControlType.SYN_REPLY:
                return SynReply(stream_id, headers, fin)
            return HeadersFrame(stream_id, headers, fin)
        if kind == ControlType.RST_STREAM:
            _need(payload, 8)
            stream_id, status = _PAIR.unpack(payload)
            return RstStream(_stream_id(stream_id), status)
        if kind == ControlType.SETTINGS:
            _need(payload, 4, exact=False)
            (count,) = _U32.unpack_from(payload)
            if len(payload) != 4 + 8 * count:
                raise SpdyProtocolError("SETTINGS length does not match its entry count")
            entries = tuple(
                (word & 0xFFFFFF, value, word >> 24)
                for word, value in (_PAIR.unpack_from(payload, 4 + 8 * i) for i in range(count))
            )
            return Settings(entries, bool(flags & FLAG_CLEAR_SETTINGS))
        if kind == ControlType.PING:
            _need(payload, 4)
            return Ping(_U32.unpack(payload)[0])
        if kind == ControlType.GOAWAY:
            _need(payload, 8)
            last_good, status = _PAIR.unpack(payload)
            return GoAway(last_good & 0x7FFFFFFF, status)
        if kind == ControlType.WINDOW_UPDATE:
            _need(payload, 8)
            stream_id, delta = _PAIR.unpack(payload)
            return WindowUpdate(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        return UnknownControl(kind, flags, payload)


def _need(payload: bytes, size: int, *, exact: bool = True) -> None:
    if len(payload) < size or (exact and len(payload) != size):
        raise SpdyProtocolError(f"control frame of {len(payload)} bytes, expected {size}")


def _stream_id(raw: int) -> int:
    stream_id = raw & 0x7FFFFFFF
    if not stream_id:
        raise SpdyProtocolError("stream id 0 is not allowed here")
    return stream_id
