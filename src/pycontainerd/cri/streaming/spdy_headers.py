"""SPDY/3 header blocks and their zlib compression, without I/O.

A header block is a 32-bit pair count followed by 32-bit-length-prefixed names and values
(names lowercase, several values of one name joined by NUL). On the wire it is compressed with
zlib primed with the dictionary of SPDY/3 section 2.6.10.1. Each direction of a connection is
*one* zlib stream: every block ends with ``Z_SYNC_FLUSH`` and the next block continues the same
stream, so a :class:`HeaderCompressor` / :class:`HeaderDecompressor` lives as long as the
connection, and every block must pass through it in wire order, even the block of a stream that
gets rejected.
"""

from __future__ import annotations

import struct
import zlib

MAX_HEADER_BLOCK = 256 * 1024
"""Largest decompressed header block accepted (a bound against zlib bombs)."""

Headers = dict[str, str]
"""Header block: lowercase names to values; several values of one name are NUL-separated."""

_U32 = struct.Struct(">I")


class SpdyProtocolError(Exception):
    """The peer broke the framing or the session rules; the connection must end."""


# SPDY/3's compression dictionary: these names, each preceded by its 32-bit big-endian length,
# then a tail of common values. Any difference breaks every peer's inflate.
_DICTIONARY_NAMES = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
]
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
HEADER_DICTIONARY = (
    b"".join(_U32.pack(len(name)) + name.encode() for name in _DICTIONARY_NAMES) + _DICTIONARY_TAIL.encode()
)


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed block; names are lowercased as SPDY requires."""
    parts = [_U32.pack(len(headers))]
    for name, value in headers.items():
        raw_name, raw_value = name.lower().encode("latin-1"), value.encode("latin-1")
        parts += [_U32.pack(len(raw_name)), raw_name, _U32.pack(len(raw_value)), raw_value]
    return b"".join(parts)


def decode_header_block(block: bytes) -> Headers:
    """Parse an uncompressed block; rejects empty, uppercase and repeated names."""
    if len(block) < 4:
        raise SpdyProtocolError("header block too short")
    (count,) = _U32.unpack_from(block)
    pos, headers = 4, {}
    for _ in range(count):
        values = []
        for _part in range(2):
            if pos + 4 > len(block):
                raise SpdyProtocolError("truncated header block")
            (length,) = _U32.unpack_from(block, pos)
            pos += 4
            if pos + length > len(block):
                raise SpdyProtocolError("truncated header block")
            values.append(block[pos : pos + length].decode("latin-1"))
            pos += length
        name, value = values
        if not name or name != name.lower():
            raise SpdyProtocolError(f"invalid header name {name!r}")
        if name in headers:
            raise SpdyProtocolError(f"repeated header {name!r}")
        headers[name] = value
    if pos != len(block):
        raise SpdyProtocolError("trailing bytes in header block")
    return headers


class HeaderCompressor:
    """The sending direction's zlib stream."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(
            zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, HEADER_DICTIONARY
        )

    def compress(self, headers: Headers) -> bytes:
        """Compress one block, flushed so that the peer can decode it completely."""
        return self._z.compress(encode_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The receiving direction's zlib stream."""

    def __init__(self, limit: int = MAX_HEADER_BLOCK) -> None:
        self._z = zlib.decompressobj(15, HEADER_DICTIONARY)
        self._limit = limit

    def decompress(self, block: bytes) -> Headers:
        """Decompress and parse one block."""
        try:
            raw = self._z.decompress(block, self._limit + 1)
        except zlib.error as exc:
            raise SpdyProtocolError(f"header decompression failed: {exc}") from exc
        if len(raw) > self._limit or self._z.unconsumed_tail:
            raise SpdyProtocolError("header block too large")
        return decode_header_block(raw)
