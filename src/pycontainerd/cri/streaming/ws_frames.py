"""WebSocket (RFC 6455) handshake values and framing, without I/O.

A frame is::

    0               1               2               3
    +-+-+-+-+-------+-+-------------+-------------------------------+
    |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
    |I|S|S|S|  (4)  |A|     (7)     |           (16/64)             |
    |N|V|V|V|       |S|             |   (if payload len==126/127)   |
    | |1|2|3|       |K|             |                               |
    +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
    |     Masking-key (0 or 4 bytes, client to server only)         |
    +---------------------------------------------------------------+

No extension is ever negotiated, so the RSV bits must be zero. Clients mask every frame, servers
never do; a frame masked the wrong way is a protocol error (close code 1002). Control frames
(close, ping, pong) carry at most 125 bytes, are never fragmented, and may arrive between the
fragments of a data message.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import os
import struct
from dataclasses import dataclass

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 32 << 20
"""Largest message accepted (x/net/websocket's default limit)."""


class Opcode(enum.IntEnum):
    """Frame opcodes."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(enum.IntEnum):
    """Close status codes used here."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    TOO_BIG = 1009


class WebSocketProtocolError(Exception):
    """The peer broke RFC 6455; close with ``code`` and drop the connection."""

    def __init__(self, message: str, code: int = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Message:
    """A complete data message (TEXT or BINARY) or a control frame (PING, PONG, CLOSE)."""

    opcode: Opcode
    payload: bytes

    def close_code(self) -> int | None:
        """For a CLOSE message: the status code it carries, if any."""
        return struct.unpack(">H", self.payload[:2])[0] if len(self.payload) >= 2 else None


def accept_token(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key`` (16 random bytes, base64)."""
    return base64.b64encode(os.urandom(16)).decode()


def valid_key(key: str) -> bool:
    """Whether ``key`` is base64 of 16 bytes, as RFC 6455 requires."""
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


def encode_frame(opcode: Opcode, payload: bytes, *, mask: bool, fin: bool = True) -> bytes:
    """One frame; ``mask`` for frames a client sends."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        head = struct.pack(">BB", first, size | (0x80 if mask else 0))
    elif size < 1 << 16:
        head = struct.pack(">BBH", first, 126 | (0x80 if mask else 0), size)
    else:
        head = struct.pack(">BBQ", first, 127 | (0x80 if mask else 0), size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _unmask(payload, key)


def close_payload(code: int, reason: str = "") -> bytes:
    """The body of a CLOSE frame."""
    return struct.pack(">H", code) + reason.encode()[:123]


def _unmask(data: bytes, key: bytes) -> bytes:
    # XOR with the 4-byte key repeated: one big-integer XOR is far faster than a byte loop.
    if not data:
        return b""
    repeated = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(len(data), "little")


class FrameParser:
    """Reassemble messages from received bytes: :meth:`feed`, then :meth:`next_message` until None.

    Args:
        server: True when parsing what a client sent (frames must be masked).
        max_message: Largest message accepted.
    """

    def __init__(self, *, server: bool, max_message: int = MAX_MESSAGE) -> None:
        self._server = server
        self._max = max_message
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None
        self._fragment_size = 0

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buffer += data

    def next_message(self) -> Message | None:
        """The next complete message, or None until more bytes arrive.

        Raises:
            WebSocketProtocolError: The bytes are not a valid frame sequence.
        """
        while (frame := self._next_frame()) is not None:
            fin, opcode, payload = frame
            if opcode >= Opcode.CLOSE:
                if opcode == Opcode.CLOSE and len(payload) == 1:
                    raise WebSocketProtocolError("close frame with a 1-byte body")
                return Message(opcode, payload)
            if opcode == Opcode.CONTINUATION:
                if self._fragment_opcode is None:
                    raise WebSocketProtocolError("continuation without a message to continue")
            elif self._fragment_opcode is not None:
                raise WebSocketProtocolError("new message before the previous one finished")
            else:
                self._fragment_opcode = opcode
            self._fragment_size += len(payload)
            if self._fragment_size > self._max:
                raise WebSocketProtocolError("message too large", CloseCode.TOO_BIG)
            self._fragments.append(payload)
            if fin:
                message = Message(self._fragment_opcode, b"".join(self._fragments))
                self._fragments, self._fragment_opcode, self._fragment_size = [], None, 0
                return message
        return None

    def _next_frame(self) -> tuple[bool, Opcode, bytes] | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        if first & 0x70:
            raise WebSocketProtocolError("reserved bits set without an extension")
        try:
            opcode = Opcode(first & 0x0F)
        except ValueError:
            raise WebSocketProtocolError(f"unknown opcode {first & 0x0F}") from None
        fin, masked, size = bool(first & 0x80), bool(second & 0x80), second & 0x7F
        if masked != self._server:
            raise WebSocketProtocolError(
                "client frames must be masked" if self._server else "server frames must not be masked"
            )
        pos = 2
        if size == 126:
            if len(buf) < 4:
                return None
            (size,) = struct.unpack_from(">H", buf, 2)
            pos = 4
        elif size == 127:
            if len(buf) < 10:
                return None
            (size,) = struct.unpack_from(">Q", buf, 2)
            pos = 10
            if size >> 63:
                raise WebSocketProtocolError("payload length has its top bit set")
        if opcode >= Opcode.CLOSE and (size > 125 or not fin):
            raise WebSocketProtocolError("control frames must be short and unfragmented")
        if size > self._max:
            raise WebSocketProtocolError("frame too large", CloseCode.TOO_BIG)
        key = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            key = bytes(buf[pos : pos + 4])
            pos += 4
        if len(buf) < pos + size:
            return None
        payload = bytes(buf[pos : pos + size])
        del buf[: pos + size]
        return fin, opcode, _unmask(payload, key) if masked else payload
